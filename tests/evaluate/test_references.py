"""Issue 9, "no wrong number without a warning": reference checks for Forget Quality / PrivLeak, items with no
scored token, a malformed record, partial eval.json files."""

import copy
import json
import shutil

import pytest
import torch

from obliviate import ObliviateError
from obliviate.evaluate import EvalConfig, aggregate, evaluate
from obliviate.evaluate import metrics as M


def test_retain_model_trained_on_forget_items_is_no_reference(target_dir, world_dir, eval_cfg, target_results,
                                                               tmp_path):
    """A 'retain' model whose recorded training split (full+world_facts) holds the forget authors: FQ and PrivLeak
    against it are not computed (the old code reported FQ near 1 for such a model)."""
    from obliviate.models.loading import load_model

    d = tmp_path / "not_a_retain"
    shutil.copytree(target_dir, d)
    (d / "obliviate.json").write_text(json.dumps({"split": "full+world_facts"}))
    model, tok = load_model(d)
    ref = evaluate(model, tok, world_dir, EvalConfig(max_new_tokens=4, embedder=None, retain=None, world_facts=None),
                   progress=False)
    n = target_results["splits"]["forget"]["n"]
    assert ref["training"] == {"split": "full+world_facts", "forget_items_seen": n}
    agg, nc = aggregate(target_results, ref)
    assert "forget_quality" not in agg and f"trained on {n} forget item(s)" in nc["forget_quality"]
    assert "privleak" not in agg and "trained on" in nc["privleak"]


def test_reference_on_another_split_or_items_is_refused(target_results, retain_results):
    other = copy.deepcopy(retain_results)
    other["splits"]["forget"]["source"] = "forget05_perturbed"
    agg, nc = aggregate(target_results, other)
    assert "forget_quality" not in agg and "on forget split 'forget05_perturbed'" in nc["forget_quality"]
    other = copy.deepcopy(retain_results)
    other["splits"]["forget"]["items"][0]["question"] = "another question?"
    agg, nc = aggregate(target_results, other)
    assert "different forget questions" in nc["forget_quality"] and "privleak" not in agg
    agg, nc = aggregate(target_results, retain_results)  # the right reference still works
    assert "forget_quality" in agg and "privleak" in agg


def test_item_with_no_scored_token_is_not_computed_and_excluded(target, target_results, retain_results):
    from obliviate.evaluate.passes import score_batch

    model, _ = target
    ids = torch.tensor([[1, 5, 6, 7], [1, 5, 6, 7]])
    labels = torch.tensor([[-100, -100, 6, 7], [-100, -100, -100, -100]])
    rows = score_batch(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    assert rows[0]["nll_mean"] > 0 and rows[1]["nll_mean"] is None and rows[1]["min_k"] is None
    res = copy.deepcopy(target_results)
    items = res["splits"]["forget"]["items"]
    items[0].update(nll_mean=None, prob=None, mia=None, truth_ratio=None)
    agg, _ = aggregate(res, retain_results)
    hold = [it["mia"]["loss"] for it in res["splits"]["holdout"]["items"]]
    assert agg["mia"]["loss"] == pytest.approx(M.mia_auc([it["mia"]["loss"] for it in items[1:]], hold))
    assert agg["forget_quality_n"][0] == len(items) - 1


def test_malformed_record_without_perturbed_twin_is_an_error(target, world_dir, tmp_path):
    data = tmp_path / "w"
    shutil.copytree(world_dir, data)
    (data / "forget10_perturbed.json").unlink()
    recs = json.loads((data / "forget10.json").read_text())
    del recs[3]["perturbed_answer"]
    (data / "forget10.json").write_text(json.dumps(recs))
    model, tok = target
    with pytest.raises(ObliviateError, match="forget record 3 .*no perturbed_answer"):
        evaluate(model, tok, data, EvalConfig(max_new_tokens=4, embedder=None, retain=None, world_facts=None),
                 progress=False)


def test_partial_eval_json_is_marked_and_refused_as_reference(target, world_dir, tmp_path, monkeypatch):
    from obliviate.evaluate import load_results, stages

    model, tok = target

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "generate_roles", killed)  # dies in the generation pass, after the forward passes
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, tok, world_dir, EvalConfig(max_new_tokens=4, embedder=None), out=tmp_path / "p",
                 progress=False)
    partial = load_results(tmp_path / "p")
    assert partial["complete"] is False and list(partial["splits"])[0] == "forget"
    assert not any("generation" in it for split in partial["splits"].values() for it in split["items"])
    monkeypatch.undo()
    with pytest.raises(ObliviateError, match="incomplete"):
        evaluate(model, tok, world_dir, EvalConfig(max_new_tokens=4, embedder=None, retain=None),
                 retain_results=tmp_path / "p", progress=False)
