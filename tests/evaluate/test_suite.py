"""evaluate(): eval.json layout, Forget Quality identities, caching/resume, and bad inputs."""

import json

import pytest

from obliviate import ObliviateError
from obliviate.evaluate import EvalConfig, aggregate, evaluate, load_results


def test_layout_and_key_names(target_results, target_out):
    r = target_results
    for key in ("model", "fingerprint", "config", "versions", "seed", "splits", "aggregates", "not_computed"):
        assert key in r
    assert set(r["splits"]) == {"forget", "holdout", "retain", "world_facts"}
    assert r["splits"]["forget"]["source"] == "forget10_perturbed"
    item = r["splits"]["forget"]["items"][0]
    for key in ("question", "answer", "generation", "rouge_l_recall", "prob", "prob_norm", "truth_ratio",
                "nll_mean", "nll_tr_mean", "nll_perturbed_mean", "token_entropy", "extraction_strength",
                "exact_memorization", "mia"):
        assert key in item, key
    assert set(item["mia"]) == {"loss", "zlib", "min_k", "min_k_pp"}
    assert "generation" not in r["splits"]["holdout"]["items"][0]
    agg = r["aggregates"]
    for key in ("forget_quality", "forget_quality_floor", "model_utility", "model_utility_parts", "mia",
                "forget_truth_ratio"):
        assert key in agg, key
    assert agg["model_utility_n"] == 6 and "real_authors" in agg["model_utility_note"]
    # no NLI model, no 'before' generations: said so, never substituted
    assert "entailment_score" in r["not_computed"] and "mu18" not in agg and "forget_efficacy" not in agg
    assert "cosine_similarity" in r["not_computed"]
    assert load_results(target_out)["fingerprint"] == r["fingerprint"]
    assert json.loads((target_out / "eval.json").read_text())["aggregates"]["model_utility"] == agg["model_utility"]


def test_item_values_are_consistent(target_results):
    """prob = exp(−nll_mean); TR = exp(nll_tr − mean nll_pert); world facts use the answer itself as ỹ."""
    import math

    for role in ("forget", "retain", "world_facts"):
        for it in target_results["splits"][role]["items"]:
            assert it["prob"] == pytest.approx(math.exp(-it["nll_mean"]))
            k = len(it["nll_perturbed_mean"])
            assert it["truth_ratio"] == pytest.approx(math.exp(it["nll_tr_mean"] - sum(it["nll_perturbed_mean"]) / k))
    for it in target_results["splits"]["world_facts"]["items"]:
        assert it["nll_tr_mean"] == it["nll_mean"]
    m = target_results["splits"]["world_facts"]["means"]
    assert m["prob"] == m["prob_norm"]
    assert target_results["splits"]["retain"]["means"]["prob"] == target_results["splits"]["retain"]["means"]["prob_raw"]


def test_target_vs_retain_forget_quality_and_mia(target_results, retain_results):
    """The target was trained on the forget authors: forget TRs differ from the retain model's (small p);
    its forget answers have lower loss than holdout ones (AUC > 0.5). The retain model vs itself gives p = 1."""
    agg = target_results["aggregates"]
    assert agg["forget_quality"] < 0.05
    assert agg["forget_quality"] >= agg["forget_quality_floor"]
    assert agg["mia"]["loss"] > 0.8
    assert "privleak" in agg and agg["privleak_reference"] == "retain model"
    self_agg, _ = aggregate(retain_results, retain_results)
    assert self_agg["forget_quality"] == pytest.approx(1.0)
    assert self_agg["privleak"] == pytest.approx(0.0)


def test_rerun_uses_cache(target, world_dir, eval_cfg, target_out, target_results, monkeypatch):
    """A second run on the same out dir recomputes nothing (forward and generation patched to fail)."""
    from obliviate.evaluate import stages as suite

    def boom(*a, **k):
        raise AssertionError("recomputed a cached stage")

    monkeypatch.setattr(suite, "forward_scores", boom)
    monkeypatch.setattr(suite, "generate", boom)
    model, tok = target
    again = evaluate(model, tok, world_dir, eval_cfg, out=target_out, progress=False)
    assert again["splits"]["forget"]["items"] == target_results["splits"]["forget"]["items"]


def test_other_models_results_are_not_overwritten(retain_dir, world_dir, eval_cfg, target_out):
    from obliviate.models.loading import load_model

    model, tok = load_model(retain_dir)
    before = (target_out / "eval.json").read_text()
    with pytest.raises(ObliviateError, match="another model"):
        evaluate(model, tok, world_dir, eval_cfg, out=target_out, progress=False)
    assert (target_out / "eval.json").read_text() == before


def test_missing_forget_split_is_a_clear_error(target, world_dir):
    model, tok = target
    with pytest.raises(ObliviateError, match="forget split not found.*forget42"):
        evaluate(model, tok, world_dir, EvalConfig(forget="forget42"), progress=False)


def test_empty_generation_gives_documented_zeros(target, world_dir, monkeypatch, tmp_path):
    """An empty generation: ROUGE 0, token entropy 0, cosine 0 (not a crash)."""
    from obliviate.evaluate import stages as suite

    monkeypatch.setattr(suite, "generate", lambda m, t, prompts, **k: ([""] * len(prompts), [[] for _ in prompts]))
    model, tok = target
    cfg = EvalConfig(max_items=3, embedder="all-MiniLM-L6-v2", retain=None, world_facts=None)
    before = {"splits": {"forget": {"items": [{"question": r["question"], "generation": "Some answer."}
                                              for r in _forget(world_dir)[:3]]}}}
    r = evaluate(model, tok, world_dir, cfg, before_results=before, out=tmp_path / "e", progress=False)
    for it in r["splits"]["forget"]["items"]:
        assert (it["generation"], it["rouge_l_recall"], it["token_entropy"], it["cosine_similarity"]) == ("", 0, 0, 0)
    assert r["aggregates"]["forget_efficacy_no_es"] > 0
    assert "model_utility" in r["not_computed"]


def _forget(world_dir):
    from obliviate.data.loading import load_split

    return load_split(world_dir, "forget10_perturbed")


def test_cosine_with_before_results_of_same_model_is_one(target, world_dir, target_results, tmp_path):
    """The 'before' generations are this model's own: cos = 1 everywhere; MU-18 without ES gets its 12 parts."""
    model, tok = target
    cfg = EvalConfig(max_new_tokens=24)
    r = evaluate(model, tok, world_dir, cfg, before_results=target_results, out=tmp_path / "cs", progress=False)
    for role in ("forget", "retain", "world_facts"):
        assert r["splits"][role]["means"]["cosine_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert "mu18_no_es" in r["aggregates"] and "mu18" not in r["aggregates"]
    assert "forget_efficacy_no_es" in r["aggregates"] and "entailment_score" in r["not_computed"]["forget_efficacy"]


def test_mismatched_before_results_are_reported(target, world_dir, tmp_path):
    model, tok = target
    before = {"splits": {"forget": {"items": [{"question": "other", "generation": "x"}]}}}
    r = evaluate(model, tok, world_dir, EvalConfig(max_items=2, retain=None, world_facts=None),
                 before_results=before, out=tmp_path / "mm", progress=False)
    assert "different questions" in r["not_computed"]["cosine_similarity"]


def test_load_results_errors(tmp_path):
    with pytest.raises(ObliviateError, match="no such eval.json"):
        load_results(tmp_path)
    (tmp_path / "eval.json").write_text("{}")
    with pytest.raises(ObliviateError, match="not an obliviate eval.json"):
        load_results(tmp_path)


def test_config_validation():
    with pytest.raises(ObliviateError, match="min_k"):
        EvalConfig(min_k=0)
    with pytest.raises(ObliviateError, match="max_new_tokens"):
        EvalConfig(max_new_tokens=0)
    assert EvalConfig(forget="forget05").holdout_split() == "holdout05"


def test_one_generation_pass_for_every_role_and_per_role_caches(target, world_dir, monkeypatch, tmp_path):
    """Every role that needs generations is generated in one `generate` call (holdout, MIA only, is not); each
    role's generations are cached in their own entry: a re-run generates nothing, and a run missing one role's
    entry (an interrupted one, or an older cache) generates that role alone, with the same results."""
    from obliviate.evaluate import stages

    calls, generate = [], stages.generate
    monkeypatch.setattr(stages, "generate", lambda m, t, prompts, **k: calls.append(len(prompts))
                        or generate(m, t, prompts, **k))
    model, tok = target
    cfg = EvalConfig(max_new_tokens=8, embedder=None)
    first = evaluate(model, tok, world_dir, cfg, out=tmp_path / "e", progress=False)
    gen_roles = [r for r, s in first["splits"].items() if "generation" in s["items"][0]]
    assert len(gen_roles) >= 3 and "holdout" in first["splits"] and "holdout" not in gen_roles
    assert calls == [sum(first["splits"][r]["n"] for r in gen_roles)]
    entries = sorted((tmp_path / "e" / "cache").rglob("*.generate.*.json"))
    assert len(entries) == len(gen_roles)

    calls.clear()
    again = evaluate(model, tok, world_dir, cfg, out=tmp_path / "e", progress=False, overwrite=True)
    assert calls == [] and again["splits"] == first["splits"]

    retain = first["splits"]["retain"]
    next(e for e in entries if e.name.startswith(retain["source"] + ".")).unlink()
    again = evaluate(model, tok, world_dir, cfg, out=tmp_path / "e", progress=False, overwrite=True)
    assert calls == [retain["n"]] and again["splits"] == first["splits"]
