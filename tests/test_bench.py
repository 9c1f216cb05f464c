"""`obliviate bench` on a tiny model: every figure finite and the JSON has the documented schema."""

import ast
import importlib
import json
import math
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.pipeline.bench import BenchConfig, markdown, matmul_peak, run_bench
from obliviate.cli import main


def _finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x >= 0


def test_bench_on_a_tiny_model_writes_finite_figures(base_dir, world_dir, tmp_path):
    cfg = BenchConfig(model=str(base_dir), data=str(world_dir), recipes=["npo+gd+sam"], steps=2, warmup=1,
                      eval=True, eval_items=3, gen_items=2, max_new_tokens=4)
    r = run_bench(cfg, tmp_path, progress=False)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["recipes"].keys() == {"npo+gd+sam"} and (tmp_path / "bench.md").read_text() == markdown(r)
    assert _finite(saved["matmul_peak_gflops"]) and saved["params"] > 0
    for name, x in saved["recipes"].items():
        for key in ("s_per_step", "tokens_per_s", "flop_utilisation"):
            assert x[key].keys() == {"median", "min", "max"} and all(_finite(v) for v in x[key].values())
            assert x[key]["min"] <= x[key]["median"] <= x[key]["max"]
        assert all(_finite(x[k]) for k in ("peak_rss_gib", "load_s", "unlearn_fixed_s", "matmul_peak_gflops"))
        assert 0 < x["flop_utilisation"]["median"] < 1.5
    # passes per step: NPO+GD = forget and retain forward+backward (reference log-probs cached); SAM adds a
    # second forget forward+backward at the perturbed weights
    assert saved["recipes"]["npo+gd+sam"]["passes_per_step"] == {"forward_backward": 3, "forward_only": 0}
    f = saved["fixed_cost"]
    assert f["recipe"] == "npo+gd+sam" and _finite(f["wall_1_step_s"]) and math.isfinite(f["wall_fixed_s"])
    e = saved["eval"]
    assert e["scoring_items"] == 3 and e["generation_items"] == 2
    assert all(_finite(e[k]) and e[k] > 0 for k in ("scoring_items_per_s", "generation_items_per_s", "peak_rss_gib"))


def test_matmul_peak_is_positive():
    assert 0 < matmul_peak(n=128, reps=2) < 1e6


def test_step_clock_waits_for_cuda_kernels_only_on_cuda(monkeypatch):
    """On CUDA the bench synchronises before each clock reading (kernels run asynchronously); on CPU it does not.
    No GPU here: the device is a torch.device object and torch.cuda.synchronize is replaced by a counter."""
    import torch

    from obliviate.pipeline.bench import clock_sync

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(a))
    clock_sync(torch.device("cuda", 0))()
    clock_sync("cuda")()
    clock_sync(torch.device("cpu"))()
    assert len(calls) == 2


def test_bench_cli_rejects_a_bad_recipe_and_bad_steps(capsys):
    assert main(["bench", "--recipes", "nope+gd", "--no-fixed-cost"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["bench", "--steps", "0"]) == 2
    capsys.readouterr()


def test_bench_points_script_names_to_the_checkout(capsys):
    """The benchmark scripts are not installed with the package: `obliviate bench NAME` says where they are."""
    assert main(["bench", "eval_speed", "--", "--n", "3"]) == 2
    err = capsys.readouterr().err
    assert "python benchmarks/eval_speed.py" in err and len(err.strip().splitlines()) == 1
    from obliviate.commands.bench import run

    with pytest.raises(ObliviateError, match="no longer runs a script"):
        run(type("A", (), {"name": ["unlearn_speed"]})())


SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_scripts_name_only_what_the_package_has(script):
    """The standalone scripts in benchmarks/ are not run by the tests: every `obliviate` module and name they
    import (also lazily, inside functions) must still exist, so a move inside the package cannot strand them."""
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "obliviate":
                    importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "obliviate":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    importlib.import_module(f"{node.module}.{alias.name}")  # a submodule, or ImportError
