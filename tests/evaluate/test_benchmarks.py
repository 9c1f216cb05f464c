"""Evaluation per benchmark on the fixtures (published schemas and layouts), from the CLI and in memory."""

import json
from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.evaluate import EvalConfig, evaluate
from obliviate.evaluate import metrics as M

FIX = Path(__file__).parents[1] / "fixtures"
ARGS = ["max_new_tokens=8", "embedder=none"]


def _eval(target_dir, tmp_path, bench, *extra):
    out = tmp_path / bench
    assert main(["eval", "--model", str(target_dir), "--data", str(FIX / bench), "--out", str(out), *extra,
                 *ARGS]) == 0
    return json.loads((out / "eval.json").read_text())


def test_tofu_published_format_nine_value_model_utility(target_dir, tmp_path, capsys):
    r = _eval(target_dir, tmp_path, "tofu", "--forget", "forget01")
    assert "benchmark: tofu (inferred from" in capsys.readouterr().out
    assert r["benchmark"] == "tofu" and r["splits"]["forget"]["source"] == "forget01_perturbed"
    assert r["splits"]["holdout"]["source"] == "holdout01"
    assert r["aggregates"]["model_utility_n"] == 9 and "model_utility_note" not in r["aggregates"]
    assert set(r["aggregates"]["mia"]) == {"loss", "zlib", "min_k", "min_k_pp"}
    assert "forget_quality" in r["not_computed"]  # no retain model given: said, not zero


def test_muse_verbmem_knowmem_privleak_with_published_reference(target_dir, tmp_path, capsys):
    r = _eval(target_dir, tmp_path, "muse-news", "--benchmark", "muse-news")
    printed = capsys.readouterr().out
    assert "benchmark: muse-news" in printed and "privleak" in printed
    agg = r["aggregates"]
    assert 0 <= agg["verbmem"] <= 100 and 0 <= agg["knowmem"] <= 100 and 0 <= agg["knowmem_retain"] <= 100
    assert r["muse"]["verbmem"]["items"][0]["prompt"].startswith("The city council")
    assert agg["privleak_reference_auc"] == 0.4772 and "constant" in agg["privleak_reference"]
    members = [it["mia"]["min_k"] for it in r["text"]["privleak_forget"]["items"]]
    nonmembers = [it["mia"]["min_k"] for it in r["text"]["privleak_holdout"]["items"]]
    auc = M.mia_auc(members, nonmembers)
    assert agg["mia"]["min_k"] == pytest.approx(auc)
    # MUSE's 0.4772 is an AUC in its orientation (1 − ours): a retrained model scores 1 − 0.4772 here
    assert agg["privleak"] == pytest.approx((auc - (1 - 0.4772)) / (1 - 0.4772) * 100)
    assert r["splits"] == {}  # no TOFU-style QA roles: knowmem goes through its ICL prompt


def test_wmdp_mcq_and_mmlu_utility(target_dir, tmp_path, capsys):
    r = _eval(target_dir, tmp_path, "wmdp")
    assert set(r["aggregates"]["mcq"]) == {"wmdp_bio", "wmdp_cyber", "wmdp_chem", "mmlu"}
    for role, res in r["mcq"].items():
        preds = [it["prediction"] for it in res["items"]]
        assert res["accuracy"] == pytest.approx(M.mcq_accuracy(preds, [it["answer"] for it in res["items"]])), role
        assert res["chance"] == 0.25
    assert "mcq_accuracy wmdp_bio" in capsys.readouterr().out


def test_rwku_levels_neighbours_and_mia(target_dir, tmp_path):
    r = _eval(target_dir, tmp_path, "rwku")
    assert set(r["splits"]) == {"forget_level1", "forget_level2", "forget_level3", "neighbor_level1",
                                "neighbor_level2"}
    it = r["splits"]["forget_level2"]["items"][0]
    assert it["question"] == "In which state was Stephen King born?"
    assert it["rouge_l_recall"] == pytest.approx(M.rouge_l_recall(it["generation"], "Maine"))
    assert set(r["aggregates"]["mia"]) == {"loss", "zlib", "min_k", "min_k_pp"}
    assert "privleak" in r["not_computed"]  # RWKU has no published reference AUC


def test_missing_split_is_not_computed_with_reason(target_dir, tmp_path):
    import shutil

    data = tmp_path / "muse"
    shutil.copytree(FIX / "muse-news", data)
    (data / "privleak" / "holdout.json").unlink()
    shutil.rmtree(data / "verbmem")
    out = tmp_path / "o"
    assert main(["eval", "--model", str(target_dir), "--data", str(data), "--benchmark", "muse-news",
                 "--out", str(out), *ARGS]) == 0
    r = json.loads((out / "eval.json").read_text())
    assert "verbmem" not in r["aggregates"] and "privleak" not in r["aggregates"]
    assert "no file" in r["not_computed"]["split:verbmem"]
    assert r["not_computed"]["privleak"].startswith("no privleak_holdout split (MIA non-members)")


def test_records_per_role_in_memory(target):
    model, tok = target
    recs = [json.loads(x) for x in (FIX / "tofu" / "forget01_perturbed.json").read_text().splitlines()]
    hold = [json.loads(x) for x in (FIX / "tofu" / "holdout01.json").read_text().splitlines()]
    r = evaluate(model, tok, {"forget": recs, "holdout": hold}, EvalConfig(max_new_tokens=4, embedder=None),
                 benchmark="tofu", progress=False)
    assert r["splits"]["forget"]["n"] == 2 and "mia" in r["aggregates"]
    assert r["missing"]["retain"] == "no records given for this role"
    text = evaluate(model, tok, {"privleak_forget": [{"text": "a b c"}], "privleak_holdout": [{"text": "d e"}]},
                    EvalConfig(embedder=None), benchmark="muse-books", progress=False)
    assert text["aggregates"]["privleak_reference_auc"] == 0.5393


def test_eval_forget_flag_refused_on_other_benchmarks(target_dir, tmp_path, capsys):
    assert main(["eval", "--model", str(target_dir), "--data", str(FIX / "wmdp"), "--forget", "forget10",
                 "--out", str(tmp_path / "x")]) == 2
    assert "--forget picks a TOFU forget level" in capsys.readouterr().err


def test_tofu_aggregates_only_where_the_benchmark_record_lists_them():
    from obliviate.evaluate import aggregate

    text = {"privleak_forget": {"items": [{"mia": dict.fromkeys(("loss", "zlib", "min_k", "min_k_pp"), 1.0)}]},
            "privleak_holdout": {"items": [{"mia": dict.fromkeys(("loss", "zlib", "min_k", "min_k_pp"), 2.0)}]}}
    agg, nc = aggregate({"benchmark": "muse-news", "splits": {}, "text": text,
                         "mia_roles": ["privleak_forget", "privleak_holdout"]}, privleak_reference_auc=0.5)
    # members score lower (more member-like) than every non-member: AUC 1, PrivLeak (1 - 0.5) / 0.5 * 100
    assert agg["mia"]["min_k"] == 1.0 and agg["privleak"] == pytest.approx(100.0)
    assert not {"forget_quality", "model_utility", "forget_efficacy"} & set(nc)
    agg, nc = aggregate({"benchmark": "wmdp", "splits": {}, "mcq": {"wmdp_bio": {"accuracy": 0.5}}})
    assert agg == {"mcq": {"wmdp_bio": 0.5}} and nc == {}
    _, nc = aggregate({"splits": {}})  # an eval.json without a benchmark is the world's
    assert "forget_quality" in nc and "mia" in nc
