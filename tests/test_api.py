"""The Python API (`obliviate/api.py`, issue 26 §7): the five exports, lazily; the verbs that are also subpackages;
typed results on a real tiny run; attack dispatch through `ATTACKS`; one-line errors."""

import json
import subprocess
import sys

import pytest

import obliviate
from obliviate import ObliviateError

EXPORTS = ("load_model", "load_benchmark", "unlearn", "evaluate", "attack")


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter (sys.modules as a user's first cell sees it)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_five_exports_import_from_obliviate_with_a_runnable_example():
    from obliviate import attack, evaluate, load_benchmark, load_model, unlearn

    for fn in (load_model, load_benchmark, unlearn, evaluate, attack):
        assert callable(fn)
        assert ">>> " in fn.__doc__, fn  # a short example in every docstring
    import inspect

    assert "recipe" not in inspect.signature(unlearn).parameters  # the real signature: config fields are **config
    assert list(inspect.signature(attack).parameters)[:4] == ["name", "model", "tokenizer", "data"]


def test_import_obliviate_and_its_exports_do_not_import_torch():
    r = _python("import json, sys, obliviate\n"
                "print(json.dumps(['torch' in sys.modules, 'obliviate.api' in sys.modules]))\n"
                "from obliviate import load_model, load_benchmark, unlearn, evaluate, attack\n"
                "print(json.dumps(['torch' in sys.modules, 'transformers' in sys.modules]))")
    assert r.returncode == 0, r.stderr
    # `import obliviate` loads no API; the exports load the light api module only: torch comes with the first call
    assert [json.loads(line) for line in r.stdout.splitlines()] == [[False, False], [False, False]], r.stdout


def test_the_verbs_and_the_subpackages_of_the_same_name_both_work():
    """Either order in a fresh interpreter: the subpackage imported first, then `from obliviate import unlearn`
    (the import system binds the subpackage to the parent: the package keeps the function), and the reverse."""
    checks = (
        "import obliviate.unlearn.loop, obliviate.evaluate.metrics, obliviate.attack.registry\n"
        "from obliviate.unlearn.loop import unlearn as loop\n"
        "from obliviate import unlearn, evaluate, attack\n"
        "import obliviate.unlearn as U\n"
        "import obliviate.api as api\n"
        "assert unlearn.__wrapped__ is api.unlearn and evaluate.__wrapped__ is api.evaluate\n"
        "assert attack.__wrapped__ is api.attack and U is unlearn\n"
        "assert obliviate.unlearn.loop.unlearn is loop\n"
        "assert obliviate.evaluate.METRICS is obliviate.evaluate.metrics.METRICS\n"
        "assert obliviate.attack.registry.ATTACKS['mia'].title\n"
        "from obliviate.unlearn import UnlearnConfig\n"
        "assert U.UnlearnConfig is UnlearnConfig\n"
        "print('ok')")
    first = _python(checks)
    assert first.returncode == 0 and first.stdout.strip() == "ok", first.stderr
    reverse = _python("from obliviate import unlearn\n" + checks)
    assert reverse.returncode == 0 and reverse.stdout.strip() == "ok", reverse.stderr


def test_monkeypatching_through_the_dotted_path_reaches_the_subpackage(monkeypatch):
    import obliviate.unlearn.loop as loop

    original = loop.recipe_needs
    monkeypatch.setattr("obliviate.unlearn.loop.recipe_needs", "patched")
    assert loop.recipe_needs == "patched"
    monkeypatch.setattr(obliviate.evaluate, "DEFAULT_FOR_TEST", 3, raising=False)
    assert sys.modules["obliviate.evaluate"].DEFAULT_FOR_TEST == 3
    monkeypatch.undo()
    assert loop.recipe_needs is original and not hasattr(sys.modules["obliviate.evaluate"], "DEFAULT_FOR_TEST")


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_names_are_one_line_errors(world_dir):
    from obliviate import attack, evaluate, load_benchmark, load_model, unlearn

    with pytest.raises(ObliviateError) as e:
        attack("nope", None, None, world_dir)
    assert "unknown attack 'nope'" in _one_line(e) and "relearn" in str(e.value)
    with pytest.raises(ObliviateError) as e:
        load_benchmark(world_dir / "missing")
    assert "missing" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        load_benchmark(world_dir, forget="forget99")
    assert "forget99" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        load_benchmark("nope", benchmark="nope")
    assert "unknown benchmark 'nope'" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        unlearn(None, None, world_dir, recipe="npo+gd", stepz=3)
    assert "unknown key(s) stepz" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        evaluate(None, None, world_dir, max_new_tokens=0)
    assert "max_new_tokens" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        attack("mia", None, None, world_dir, original="models/x")
    assert "does not read original" in _one_line(e)
    with pytest.raises(ObliviateError) as e:
        load_model(world_dir / "no_model")
    assert "no_model" in _one_line(e)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        obliviate.nope  # noqa: B018


@pytest.fixture(scope="module")
def tiny_run(world_dir, unlearn_target_dir):
    """The target micro model evaluated, unlearned with npo+gd for 4 steps, evaluated again (module: ~20 s)."""
    from obliviate import evaluate, load_benchmark, load_model, unlearn

    data = load_benchmark(world_dir)
    model, tok = load_model(unlearn_target_dir)
    before = evaluate(model, tok, data, max_new_tokens=16, embedder=None, progress=False)
    run = unlearn(model, tok, data, recipe="npo+gd", max_steps=4, lr=3e-3, progress=False)
    after = evaluate(run.model, tok, data, max_new_tokens=16, embedder=None, progress=False)
    return data, tok, before, run, after


def _numbers_are_numbers(d):
    """Every leaf of a to_dict() is JSON data; no number hides in a string ('0.283')."""
    if isinstance(d, dict):
        return all(_numbers_are_numbers(v) for v in d.values())
    if isinstance(d, list):
        return all(_numbers_are_numbers(v) for v in d)
    if isinstance(d, str):
        try:
            float(d)
        except ValueError:
            return True
        return False
    return d is None or isinstance(d, (bool, int, float))


def test_load_benchmark_resolves_the_world(tiny_run, world_dir):
    data = tiny_run[0]
    assert (data.name, data.forget_split, data.retain_split) == ("world", "forget10", "retain90")
    assert data.forget == json.loads((world_dir / "forget10.json").read_text())
    assert len(data.retain) == len(json.loads((world_dir / "retain90.json").read_text()))


def test_unlearn_result_is_typed_and_json_ready(tiny_run):
    run = tiny_run[3]
    d = run.to_dict()
    json.dumps(d, allow_nan=False)
    assert _numbers_are_numbers(d)
    assert d["recipe"] == "npo+gd" and d["config"]["max_steps"] == 4 and len(d["log"]) == 4
    assert run.metrics["steps"] == 4 and run.metrics["forget_prob_after"] < run.metrics["forget_prob_before"]
    text = run.summary()
    assert "npo+gd: 4 steps" in text and f"{run.metrics['forget_prob_after']:.3f}" in text


def test_eval_result_metrics_are_eval_json_flat(tiny_run):
    before, after = tiny_run[2], tiny_run[4]
    r = after.results
    assert after.metrics["forget_prob"] == r["splits"]["forget"]["means"]["prob"]
    assert after.metrics["retain_nll"] == r["splits"]["retain"]["means"]["nll_mean"]
    assert after.metrics["mia_min_k"] == r["aggregates"]["mia"]["min_k"]
    assert after.metrics["model_utility"] == r["aggregates"]["model_utility"]
    assert after.metrics["forget_prob"] < before.metrics["forget_prob"]  # unlearning moved it
    assert "cosine_similarity" in after.not_computed  # embedder=None: said, with the reason
    d = after.to_dict()
    json.dumps(d, allow_nan=False)
    assert _numbers_are_numbers(d["metrics"]) and d["results"]["complete"] is True
    text = after.summary()
    assert f"prob={r['splits']['forget']['means']['prob']:.3f}" in text and "not computed" in text


def test_attack_dispatches_on_the_registry(tiny_run, tmp_path):
    from obliviate import attack
    from obliviate.api import jsonable
    from obliviate.attack.mia import mia_from_results
    from obliviate.models.loading import model_fingerprint

    data, tok, _, run, after = tiny_run
    mia = attack("mia", run.model, tok, data, start_results=after, out=tmp_path / "mia")
    assert mia.to_dict()["result"] == jsonable(mia_from_results(after.results, None))  # no new pass
    assert json.loads((tmp_path / "mia" / "mia.json").read_text()) == mia.to_dict()["result"]
    assert "Membership inference" in mia.summary()

    weights = model_fingerprint(run.model)
    relearn = attack("relearn", run.model, tok, data, k=4, steps=[2], out=tmp_path / "relearn")
    assert model_fingerprint(run.model) == weights  # relearning trained a copy, not the caller's model
    curve = relearn.result["curve"]
    assert [p["step"] for p in curve] == [0, 2] and relearn.config.k == 4
    assert curve[1]["prob"] > curve[0]["prob"]  # fine-tuning on forget items brings them back
    assert (tmp_path / "relearn" / "run.json").is_file()
    d = relearn.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["attack"] == "relearn" and _numbers_are_numbers(d["result"]["curve"])
    assert "Relearning attack" in relearn.summary()
