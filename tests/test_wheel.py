"""The package works from a wheel (issues 22 and 26): build it from a copy of this checkout, install it into a
fresh venv outside the repository, and run the verbs from another directory.

The venv has no system site-packages and no `PYTHONPATH`; so that torch and the other dependencies (GBs) are
not installed again, a `.pth` file adds this venv's site-packages *as a plain path*: the `.pth` files in it
(among them the editable install's path to the repository's `src/`) are not processed, so the only obliviate
the venv can import is the wheel's. The test fails if package data is missing from the wheel or if the
installed code reaches into the repository (a path like `parents[3] / "benchmarks"` lands inside the venv).
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


def install(wheel: Path, venv: Path) -> Path:
    """A fresh venv with the wheel installed, then this venv's packages visible as a plain path."""
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent, env=_env())
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=venv.parent, env=_env())
    site = _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv, env=_env())
    here = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site.stdout.strip()) / "obliviate-test-deps.pth").write_text("\n".join(here) + "\n")
    return py


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    venv = tmp / "venv"
    install(build_wheel(tmp), venv)
    return venv


def test_the_venv_imports_the_installed_wheel(venv, tmp_path):
    code = "import json, sys, obliviate; print(json.dumps([obliviate.__file__, sys.path]))"
    out = _run([venv / "bin" / "python", "-c", code], cwd=tmp_path, env=_env(venv)).stdout
    file, path = json.loads(out)
    assert Path(file).resolve().is_relative_to(venv.resolve()), file
    deps = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}  # may sit in the checkout
    into_checkout = [p for p in path if p and Path(p).resolve().is_relative_to(ROOT) and Path(p).resolve() not in deps]
    assert not into_checkout, path  # no way into the checkout's code (src/, the repository root)


@pytest.mark.parametrize("verb", ["reproduce", "steal"])
def test_help_from_another_directory(venv, tmp_path, verb):
    r = _run([venv / "bin" / "obliviate", verb, "--help"], cwd=tmp_path, env=_env(venv))
    assert r.stdout.startswith("usage: obliviate " + verb)


def test_bench_from_another_directory(venv, tmp_path):
    _run([venv / "bin" / "obliviate", "bench", "--model", "tiny", "--recipes", "ga+gd", "--steps", "2",
          "--out", "bench"], cwd=tmp_path, env=_env(venv))
    assert (tmp_path / "bench" / "bench.json").is_file() and (tmp_path / "bench" / "bench.md").is_file()


def test_demo_from_another_directory(venv, tmp_path):
    _run([venv / "bin" / "obliviate", "demo", "--preset", "tiny", "--seeds", "1", "--out", "demo"],
         cwd=tmp_path, env=_env(venv))
    assert any((tmp_path / "demo").rglob("*.html"))  # the report card
