"""The import layers, the absence of cycles and the classifier module's independence, checked by import-linter
with the contracts in pyproject.toml (`[tool.importlinter]`). On failure the test prints lint-imports' report."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("importlinter") is None,
                                reason="import-linter is not installed (the dev extra installs it: "
                                       "pip install -e '.[dev]')")


def lint_imports(src: Path, *contracts: str) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under `src` (put first on the path), with this repository's contracts."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                                 "sys.exit(lint_imports_command())", str(ROOT / "pyproject.toml"), "--no-cache"]
    cmd += [a for c in contracts for a in ("--contract", c)]
    return subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    r = lint_imports(ROOT / "src")
    assert r.returncode == 0, f"lint-imports failed:\n{r.stdout}\n{r.stderr}"
    assert "broken" in r.stdout and " 0 broken" in r.stdout  # the contracts really ran


@pytest.mark.parametrize("module, line, contract, message", [
    # an upward import, lazy inside a function as the old cycles were
    ("data/world.py", "def _upward():\n    from obliviate.pipeline import bench\n", "layers",
     "obliviate.data.world -> obliviate.pipeline.bench"),
    ("stats.py", "def _upward():\n    from obliviate.evaluate import metrics\n", "base",
     "obliviate.stats -> obliviate.evaluate.metrics"),
])
def test_an_upward_import_breaks_a_contract(tmp_path, module, line, contract, message):
    """The contracts catch what they promise to: a copy of the package with one upward import fails."""
    shutil.copytree(ROOT / "src" / "obliviate", tmp_path / "obliviate", ignore=shutil.ignore_patterns("__pycache__"))
    with open(tmp_path / "obliviate" / module, "a") as f:
        f.write("\n\n" + line)
    r = lint_imports(tmp_path, contract)
    assert r.returncode != 0 and message in " ".join(r.stdout.split()), f"{r.stdout}\n{r.stderr}"
