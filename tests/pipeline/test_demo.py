"""The demo pipeline end to end on the tiny world (micro model, 1 seed): every report section, finite numbers,
stage reuse, and `obliviate report` rebuilding from saved results."""

import json
import math
import re

import pytest

from obliviate.cli import main
from obliviate.pipeline import DEMO_RECIPES, DemoConfig, run_demo

SECTIONS = ["Headline", "Not computed", "Forgetting vs utility", "Attacks", "Relearning attack", "Jailbreak",
            "Membership inference", "Per-item truth ratios", "forget questions", "retain questions", "Run"]
ATTACKS = dict(attacks=["relearn", "jailbreak", "mia"], jailbreak_tokens=4, jailbreak_steps=2, jailbreak_search_width=8)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), model_size="micro", finetune_epochs=30,
                     finetune_batch_size=16, relearn_k=4, relearn_steps=[2, 4], max_new_tokens=24, **ATTACKS)
    return out, run_demo(cfg, progress=False)


def test_report_has_every_section_and_finite_numbers(demo_run):
    out, report = demo_run
    html = report.read_text()
    for s in SECTIONS:
        assert s in html, s
    assert html.count("data:image/png;base64,") == 5  # scatter, truth-ratio histograms, one per attack
    assert "http://" not in html and "https://" not in html  # opens offline
    results = json.loads((out / "results.json").read_text())
    names = [r[0] for r in results["rows"]]
    assert names == ["target (before)", "retain (ideal)"] + DEMO_RECIPES
    col = results["headers"].index
    for row in results["rows"]:
        for key in ("Forget Quality", "Model Utility", "forget Prob", "retain Prob", "MIA AUC (Min-K)"):
            value = row[col(key)]  # numbers as numbers (issue 26 §4), not "m ± h" strings
            assert isinstance(value, float) and math.isfinite(value), (row[0], key)
    assert results["rows"][1][col("Forget Quality")] == 1.0  # retain vs itself, said in notes
    assert "sanity check" in results["notes"]["retain (ideal)"]
    for name, cells in results["null_reasons"].items():  # every null cell has its reason
        row = next(r for r in results["rows"] if r[0] == name)
        assert {h for h, v in zip(results["headers"], row) if v is None} == set(cells), name
    assert "entailment_score" in results["not_computed"]  # no NLI model offline: said, not faked
    assert set(results["attacks"]) == {"relearn", "jailbreak", "mia"}
    assert [r[0] for r in results["attacks"]["mia"]["rows"]] == DEMO_RECIPES + ["retain (never saw the forget items)"]
    md = (out / "report.md").read_text()
    assert "| npo+gd+sam | 1 |" in md
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["versions"]) >= {"torch", "transformers", "obliviate"}
    assert demo["config"]["seeds"] == 1


def test_unlearning_lowers_forget_probability_for_every_recipe(demo_run):
    out, _ = demo_run
    rows = json.loads((out / "results.json").read_text())["rows"]
    headers = json.loads((out / "results.json").read_text())["headers"]
    prob = {r[0]: float(r[headers.index("forget Prob")]) for r in rows}
    for recipe in DEMO_RECIPES:
        assert prob[recipe] < prob["target (before)"], recipe
        # the run's 'after' probe is its evaluation's forget split (folded), recorded in its summary.json
        seed0 = out / "runs" / recipe.replace("+", "_") / "seed0"
        summary = json.loads((seed0 / "model" / "summary.json").read_text())
        forget = json.loads((seed0 / "eval" / "eval.json").read_text())["splits"]["forget"]["means"]
        assert summary["after_from"].startswith("../eval/eval.json: forget split"), recipe
        assert summary["forget_prob_after"] == forget["prob_raw"] < summary["forget_prob_before"], recipe
        assert summary["forget_mean_logp_after"] == -forget["nll_mean"], recipe


def test_second_run_reuses_every_stage_and_report_rebuilds(demo_run, capsys):
    out, report = demo_run
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), model_size="micro", finetune_epochs=30,
                     finetune_batch_size=16, relearn_k=4, relearn_steps=[2, 4], max_new_tokens=24, **ATTACKS)
    run_demo(cfg, progress=False)
    timings = json.loads((out / "demo.json").read_text())["timings"]
    assert timings and all(t["reused"] for t in timings.values())
    report.unlink()
    assert main(["report", str(out)]) == 0
    assert report.is_file() and re.search(r"wrote .*report\.html", capsys.readouterr().out)


def test_the_demo_verb_prints_the_headline_with_arrows(demo_run, capsys, monkeypatch):
    """The headline `obliviate demo` prints at the end carries the card's ↑ / ↓ (issue 26 §8)."""
    import obliviate.pipeline

    out, report = demo_run
    monkeypatch.setattr(obliviate.pipeline, "run_demo", lambda cfg: report)  # the finished run above
    assert main(["demo", "--preset", "tiny", "--seeds", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Forget Quality ↑" in printed and "MIA AUC (Min-K) → 0.5" in printed and "PrivLeak → 0 %" in printed


def test_report_of_a_directory_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a finished demo run" in capsys.readouterr().err


def test_jobs_are_scheduled_longest_first(tmp_path):
    """Chain jobs with attacks cost most, then continual jobs (by their task count), then plain chain jobs; the
    pool runs them in that order so no worker idles at the end while the other finishes a long job."""
    from obliviate.pipeline.pool import JOB_COSTS, by_cost, job_cost, run_jobs

    cfg = DemoConfig(out=str(tmp_path), attacks=["relearn", "jailbreak", "mia"], attack_recipes=["npo+gd"],
                     relearn_steps=[5, 10], continual=["npo+gd"], continual_tasks=3)
    c = JOB_COSTS
    plain = c["unlearn"] + c["eval"]
    assert job_cost(cfg, recipe="ga+gd") == pytest.approx(plain)
    assert job_cost(cfg, recipe="npo+gd") == pytest.approx(plain + c["relearn_train"] + 2 * c["relearn_point"]
                                                           + c["jailbreak"])
    assert job_cost(cfg, continual=True) == pytest.approx(3 * c["continual_task"])
    assert job_cost(DemoConfig(out=str(tmp_path), continual_tasks=2), continual=True) < job_cost(cfg, continual=True)
    order = []
    run_jobs([(lambda k=k: k, order.append) for k in "abc"], workers=1)
    assert order == ["a", "b", "c"]
    order = []
    run_jobs(by_cost([(1.0, lambda: "short", order.append), (3.0, lambda: "long", order.append),
                      (2.0, lambda: "mid", order.append)]), workers=1)
    assert order == ["long", "mid", "short"]
