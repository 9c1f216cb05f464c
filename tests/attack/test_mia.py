import pytest

from obliviate import ObliviateError
from obliviate.attack.mia import MIAConfig, membership_inference, mia_from_results, mia_report, roc_points
from obliviate.evaluate import EvalConfig, evaluate


def _items(scores: list[float], side: str = "m") -> list[dict]:
    """Items of one side (members "m", non-members "n"): the two sides hold other questions (issue 28)."""
    return [{"index": i, "question": f"{side}{i}", "mia": {k: s for k in ("loss", "zlib", "min_k", "min_k_pp")}}
            for i, s in enumerate(scores)]


def test_aucs_on_scores_with_a_known_ordering():
    """Loss-like scores, members labelled 0: AUC = P(non-member score > member score).
    Separated {.1,.2,.3} vs {.4,.5,.6}: 1. Reversed: 0. Members {1,3} vs non-members {2,4}: of the 4 pairs
    (2>1, 4>1, 4>3 yes; 2>3 no) 3 are ordered → 0.75. Retain members {1,3,5} vs {2,4,6}: 6 of 9 pairs → 2/3,
    a gap of 1/3 to the model's 1."""
    sep = mia_report(_items([0.1, 0.2, 0.3]), _items([0.4, 0.5, 0.6], "n"), retain_members=_items([1, 3, 5]),
                     retain_nonmembers=_items([2, 4, 6], "n"))
    assert sep["auc"]["model"] == {"loss": 1.0, "zlib": 1.0, "min_k": 1.0, "min_k_pp": 1.0}
    assert sep["auc"]["retain"]["min_k"] == pytest.approx(2 / 3) and sep["auc"]["gap"]["min_k"] == pytest.approx(1 / 3)
    assert mia_report(_items([1, 3]), _items([2, 4], "n"))["auc"]["model"]["zlib"] == 0.75
    assert mia_report(_items([0.4, 0.5, 0.6]), _items([0.1, 0.2, 0.3], "n"))["auc"]["model"]["loss"] == 0.0
    assert "retain" not in mia_report(_items([1, 3]), _items([2, 4], "n"))["auc"]
    roc = roc_points([1, 3], [2, 4])  # thresholds 4, 3, 2, 1 → (fpr, tpr) (0,.5) (.5,.5) (.5,1) (1,1)
    assert list(zip(roc["fpr"], roc["tpr"]))[-4:] == [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    assert [i["member"] for i in sep["items"]] == [True] * 3 + [False] * 3
    assert sep["items"][0]["scores"]["loss"] == 0.1 and sep["items"][0]["retain_scores"]["loss"] == 1


def test_attack_scores_are_the_evaluation_scores(attack_target, base_dir, world_dir, tmp_path):
    """`obliviate attack mia` must give the AUCs `obliviate eval` reports (one implementation, one pass)."""
    from obliviate.models.loading import load_model

    model, tok = attack_target
    ecfg = EvalConfig(retain=None, world_facts=None, real_authors=None, embedder=None, max_new_tokens=2)
    results = evaluate(model, tok, world_dir, ecfg, progress=False)
    retain = load_model(base_dir)
    report = membership_inference(model, tok, world_dir, MIAConfig(), retain=retain, out=tmp_path, progress=False)
    assert report["auc"]["model"] == pytest.approx(results["aggregates"]["mia"])
    # the registry's run: from the saved evaluation (no new pass) when given, and run.json beside mia.json
    from obliviate.attack.registry import ATTACKS

    again = ATTACKS["mia"].run((model, tok), world_dir, MIAConfig(), tmp_path / "reg", start_results=results)
    assert again["auc"]["model"] == pytest.approx(report["auc"]["model"])
    assert (tmp_path / "reg" / "mia.json").is_file() and (tmp_path / "reg" / "run.json").is_file()
    assert report["auc"]["model"]["loss"] > 0.9  # the target was trained on forget, not on holdout
    assert (tmp_path / "mia.json").is_file() and len(report["items"]) == 16
    retain_results = evaluate(*retain, world_dir, ecfg, progress=False)
    from_results = mia_from_results(results, retain_results)["auc"]
    for who in ("model", "retain", "gap"):
        assert from_results[who] == pytest.approx(report["auc"][who])


def test_errors_name_the_problem(attack_target, world_dir, tmp_path):
    model, tok = attack_target
    with pytest.raises(ObliviateError, match="no holdout split"):
        membership_inference(model, tok, world_dir, MIAConfig(holdout="nosuch"), progress=False)
    with pytest.raises(ObliviateError, match="min_k must be a finite number in"):
        MIAConfig(min_k=0)
    res = {"splits": {"forget": {"source": "f", "items": _items([1, 2])}, "holdout": {"source": "h",
                                                                                    "items": _items([3, 4], "n")}}}
    other = {"splits": {"forget": {"items": [{**it, "question": "other"} for it in _items([1, 2])]},
                        "holdout": {"items": _items([3, 4], "n")}}}
    with pytest.raises(ObliviateError, match="other items than the model's"):
        mia_from_results(res, other)
    with pytest.raises(ObliviateError, match="no forget and holdout"):
        mia_from_results({"splits": {"forget": res["splits"]["forget"]}})


def test_report_card_lists_exactly_the_attacks_with_results():
    from obliviate.report.attacks import attack_sections

    mia = mia_report(_items([1, 3]), _items([2, 4], "n"))
    sections = attack_sections({"npo+gd": [{"relearn": None, "jailbreak": None, "mia": mia}],
                                "ga+gd": [{"relearn": None, "jailbreak": None, "mia": None}]})
    assert [s["name"] for s in sections] == ["mia"]
    assert sections[0]["rows"] == [["npo+gd", 1, "0.750", "0.750", "0.750", "0.750", "—"]]
    assert sections[0]["png"].startswith(b"\x89PNG")
    assert attack_sections({"npo+gd": [{"relearn": None, "jailbreak": None, "mia": None}]}) == []


def test_attacks_refuse_a_benchmark_without_a_forget_split_by_name(tmp_path, capsys):
    from pathlib import Path

    from obliviate.cli import main

    wmdp = Path(__file__).parents[1] / "fixtures" / "wmdp"
    assert main(["attack", "mia", "--model", str(tmp_path), "--data", str(wmdp)]) == 2
    err = capsys.readouterr().err
    assert "benchmark wmdp has no forget split read by name" in err and err.count("\n") == 1
