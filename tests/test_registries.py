"""One record per addition: a throwaway objective, metric, benchmark and attack, each added to its registry only
(monkeypatched dicts), and the CLI, aggregation and the report card pick each one up."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from obliviate.cli import main

FAST_EVAL = ["max_new_tokens=4", "embedder=none", "retain=none", "world_facts=none", "real_authors=none"]


# --------------------------------------------------------------------------------------------- objective


def half_ga_loss(forget_mean_logps):
    """Half gradient ascent (a throwaway objective for this test)."""
    return 0.5 * forget_mean_logps.mean()


def test_objective_is_one_record(monkeypatch, unlearn_target_dir, world_dir, tmp_path, capsys):
    from obliviate.unlearn.forward import Part
    from obliviate.unlearn.objectives import OBJECTIVES

    monkeypatch.setitem(OBJECTIVES, "halfga", Part(half_ga_loss, lambda v, c: dict(
        forget_mean_logps=v.logps("forget").mean())))
    assert main(["ls", "objectives"]) == 0
    listed = capsys.readouterr().out
    assert "halfga" in listed and "Half gradient ascent" in listed
    out = tmp_path / "u"
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "halfga+gd",
                 "--out", str(out), "max_steps=2", "batch_size=2", "lr=3e-3", "warmup_epochs=0"]) == 0
    assert "unlearned halfga+gd: 2 steps" in capsys.readouterr().out
    assert json.loads((out / "run.json").read_text())["config"]["objective"] == "halfga"


# ------------------------------------------------------------------------------------------------ metric


def _words(item: dict) -> float | None:
    return float(len(item["generation"].split())) if "generation" in item else None


@pytest.fixture
def words_metric(monkeypatch):
    from obliviate.evaluate.metrics import METRICS, Metric

    monkeypatch.setitem(METRICS, "answer_words", Metric(
        lambda generation: len(generation.split()), None, "item", "generation", "mean", "Words",
        (("forget", None),), description="words in the greedy answer (throwaway)", paper="this test",
        from_item=_words))
    return "answer_words"


def test_metric_is_one_record(words_metric, unlearn_target_dir, world_dir, tmp_path, capsys):
    from obliviate.evaluate.aggregate import split_means
    from obliviate.report.card import columns
    from obliviate.report.glossary import glossary_rows

    assert main(["ls", "metrics"]) == 0
    assert "answer_words" in capsys.readouterr().out
    out = tmp_path / "e"
    assert main(["eval", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--out", str(out),
                 *FAST_EVAL]) == 0
    assert "answer_words" in capsys.readouterr().out  # the eval summary shows the split mean
    res = json.loads((out / "eval.json").read_text())
    items = res["splits"]["forget"]["items"]
    assert [it["answer_words"] for it in items] == [len(it["generation"].split()) for it in items]
    assert res["splits"]["forget"]["means"]["answer_words"] == pytest.approx(
        sum(it["answer_words"] for it in items) / len(items))
    assert split_means("forget", items)["answer_words"] == res["splits"]["forget"]["means"]["answer_words"]
    assert ("forget Words", ("forget", "answer_words"), None) in columns()  # a report-card column
    assert ["Words", "answer_words", "→ target", "words in the greedy answer (throwaway)", "this test"] in \
        glossary_rows(["forget Words"])


# --------------------------------------------------------------------------------------------- benchmark


@pytest.fixture
def probe_benchmark(monkeypatch, world_dir, tmp_path):
    from obliviate.data.benchmarks import BENCHMARKS, Benchmark, Role
    from obliviate.data.loading import load_split

    data = tmp_path / "probe-data"
    (data / "qa").mkdir(parents=True)
    recs = load_split(world_dir, "forget10")
    (data / "qa" / "forget.json").write_text(json.dumps(recs))
    (data / "qa" / "probe.json").write_text(json.dumps([{"question": r["question"], "answer": r["answer"]}
                                                        for r in recs[:3]]))
    monkeypatch.setitem(BENCHMARKS, "probe", Benchmark(
        "probe", None, "a throwaway QA benchmark (this test)",
        roles={"forget_train": Role("qa", "forget", "qa"), "probe": Role("qa", "probe", "qa")},
        metrics={"probe": ("rouge_l_recall", "prob")}))
    return data


def test_benchmark_is_one_record(probe_benchmark, unlearn_target_dir, tmp_path, capsys):
    from obliviate.evaluate import aggregate

    assert main(["ls", "benchmarks"]) == 0
    assert "a throwaway QA benchmark" in capsys.readouterr().out
    out = tmp_path / "e"
    assert main(["eval", "--model", str(unlearn_target_dir), "--data", str(probe_benchmark), "--out", str(out),
                 "max_new_tokens=4", "embedder=none"]) == 0
    assert "benchmark: probe (inferred from" in capsys.readouterr().out  # from its declared files
    res = json.loads((out / "eval.json").read_text())
    assert res["benchmark"] == "probe" and list(res["splits"]) == ["probe"] and res["splits"]["probe"]["n"] == 3
    assert {"rouge_l_recall", "prob"} <= set(res["splits"]["probe"]["means"])
    agg, nc = aggregate(res)  # the record lists no corpus metric and no MIA roles: none computed, none missed
    assert agg == {} and set(nc) == {"cosine_similarity", "entailment_score"}  # (stages switched off: said)
    u = tmp_path / "u"
    assert main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(probe_benchmark), "--benchmark",
                 "probe", "--recipe", "ga", "--out", str(u), "max_steps=2", "batch_size=2", "lr=3e-3",
                 "warmup_epochs=0"]) == 0
    assert json.loads((u / "obliviate.json").read_text())["benchmark"] == "probe"


# ------------------------------------------------------------------------------------------------ attack


@dataclass
class CountConfig:
    forget: str = "forget10"
    scale: float = 1.0


def run_count(model, data, cfg, out, *, start_results=None, retain_results=None, original=None, retain_model=None,
              allow_pickle=False, progress=True):
    from obliviate.config import write_run_info
    from obliviate.data.loading import load_split
    from obliviate.rundir import write_json

    result = {"n": len(load_split(data, cfg.forget)) * cfg.scale}
    write_json(Path(out) / "count.json", result)
    write_run_info(out, cfg)
    return result


def count_plot(groups, target=None):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar(list(groups), [rs[0]["n"] for rs in groups.values()])
    return fig


@pytest.fixture
def count_attack(monkeypatch):
    from obliviate.attack.registry import ATTACKS, Attack

    monkeypatch.setitem(ATTACKS, "count", Attack(
        "Counting attack (throwaway)", CountConfig, run_count, "count.json",
        lambda groups: (["model", "Prob"], [[label, rs[0]["n"]] for label, rs in groups.items()]), count_plot,
        "counts the forget items", help="count the forget items (a throwaway attack)",
        flags={"scale": "multiply the count"}))
    return "count"


def test_attack_is_one_record(count_attack, unlearn_target_dir, world_dir, tmp_path, capsys):
    assert main(["ls", "attacks"]) == 0
    assert "count the forget items" in capsys.readouterr().out
    out = tmp_path / "a"
    assert main(["attack", "count", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--scale", "2",
                 "--out", str(out)]) == 0
    assert "| " + str(unlearn_target_dir) in capsys.readouterr().out
    assert json.loads((out / "count.json").read_text()) == {"n": 16.0}  # the tiny world's forget10: 8 items
    assert json.loads((out / "run.json").read_text())["config"] == {"forget": "forget10", "scale": 2.0}
    assert (out / "count.png").read_bytes().startswith(b"\x89PNG")


def test_the_pipeline_runs_the_attack_as_a_stage(count_attack, world_dir, tmp_path):
    """The demo/reproduce chain loops over ATTACKS: the throwaway attack runs as the stage `<seed dir>/count/`,
    its config from the run's shared settings plus the DemoConfig fields named `count_<field>` (none here: the
    dataclass default scale 1.0), and a second pass reuses the finished stage."""
    import shutil

    from obliviate.pipeline import DemoConfig
    from obliviate.pipeline.chains import attack_stages
    from obliviate.stagecache import Stages
    from obliviate.unlearn import UnlearnConfig

    out = tmp_path / "demo"
    shutil.copytree(world_dir, out / "world")
    run = out / "runs" / "ga_gd" / "seed0"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "eval.json").write_text(json.dumps({"splits": {}}))
    cfg = DemoConfig(preset="tiny", seeds=1, out=str(out), recipes=["ga+gd"], attacks=[count_attack])
    st = Stages(out)
    attack_stages(cfg, st, run, "ga+gd", 0, {"model": "key"}, UnlearnConfig(recipe="ga+gd"), {"splits": {}}, False)
    assert json.loads((run / "count" / "count.json").read_text()) == {"n": 8.0}
    assert json.loads((run / "count" / "stage.json").read_text())["key"]["count"] == {"forget": "forget10",
                                                                                      "scale": 1.0}
    (run / "count" / "count.json").write_text(json.dumps({"n": -1}))  # a reused stage is not recomputed
    attack_stages(cfg, Stages(out), run, "ga+gd", 0, {"model": "key"}, UnlearnConfig(recipe="ga+gd"), {"splits": {}},
                  False)
    assert json.loads((run / "count" / "count.json").read_text()) == {"n": -1}


# ----------------------------------------------------------------------------------- the report card


def _eval(prob: float, fq: float | None) -> dict:
    items = [{"question": f"q{i}", "answer": "a", "generation": "g", "truth_ratio": 0.5 + i / 10,
              "answer_words": 1.0} for i in range(3)]
    means = {"prob": prob, "rouge_l_recall": 0.5, "truth_ratio": 0.4, "answer_words": 1.0}
    return {"splits": {r: {"items": items, "means": means} for r in ("forget", "retain")},
            "aggregates": {"forget_quality": fq, "model_utility": 0.5, "mia": {"min_k": 0.6}}}


def _demo_run(root: Path) -> Path:
    """A finished demo run directory (saved files only: the card reads nothing else)."""
    def write(path, obj):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    write(root / "demo.json", {"config": {"recipes": ["ga+gd"], "preset": "tiny", "model_size": "micro",
                                          "forget": "forget10", "seeds": 2},
                               "timings": {"world": {"seconds": 1.0, "reused": False}}, "versions": {},
                               "wall_seconds": 3.0, "retain_vs_itself": {"forget_quality": 1.0}})
    write(root / "eval/target/eval.json", _eval(0.9, 1e-3))
    write(root / "eval/retain/eval.json", _eval(0.2, None))
    write(root / "eval/stage.json", {"key": {}, "seconds": 1.0})  # stages the pipeline marked complete
    for seed in (0, 1):
        write(root / f"runs/ga_gd/seed{seed}/eval/eval.json", _eval(0.3 + seed / 10, 0.5))
        write(root / f"runs/ga_gd/seed{seed}/count/count.json", {"n": 8 + seed})
        for stage in ("eval", "count"):
            write(root / f"runs/ga_gd/seed{seed}/{stage}/stage.json", {"key": {}, "seconds": 1.0})
    return root


def test_report_card_picks_up_the_metric_and_the_attack(words_metric, count_attack, tmp_path):
    from obliviate.report.card import write_report

    run = _demo_run(tmp_path / "demo")
    html = write_report(run).read_text()
    results = json.loads((run / "results.json").read_text())
    assert "forget Words" in results["headers"]  # the new metric's column
    assert round(results["rows"][2][results["headers"].index("forget Words")], 3) == 1.0  # a number
    count = results["attacks"]["count"]
    assert (count["headers"], count["rows"], count["spread"]) == (["model", "Prob"], [["ga+gd", 8]], [[None, None]])
    assert "Counting attack (throwaway)" in html and (run / "count.png").is_file()
    assert "words in the greedy answer (throwaway)" in html  # the glossary row of the new metric
    md = (run / "report.md").read_text()
    assert "## Glossary" in md and "| TR | truth_ratio | ↑ forget, retain |" in md
    assert "| Forget Quality / FQ | forget_quality | ↑ |" in md


def test_every_column_the_card_shows_has_a_metric_record(tmp_path):
    """Headline columns and every attack table's headers: each names a METRICS record (or is a plain column)."""
    from obliviate.attack import tables
    from obliviate.report.card import headline
    from obliviate.report.glossary import glossary_rows, unexplained
    from obliviate.report.runs import collect

    data = collect(_demo_run(tmp_path / "demo"))
    headers = headline(data)[0]
    curve = [{"step": 0, "prob": 0.5, "prob_unseen": 0.4, "rouge_l_recall": 0.3, "truth_ratio": 0.6,
              "forget_quality": 0.1}]
    headers += tables.relearn_table({"a": [{"curve": curve}]})[0]
    headers += tables.jailbreak_table({"a": [{"metrics": {}, "not_computed": {"seen": "x", "unseen": "y"}}]})[0]
    headers += tables.mia_table({"a": [{"auc": {"model": dict.fromkeys(tables.MIA_LABELS, 0.5)}}]})[0]
    assert unexplained(headers) == []
    assert unexplained(["forget Zork"]) == ["forget Zork"]  # a column without a record is caught
    terms = {row[0] for row in glossary_rows(headers)}
    for term in ("TR", "TE", "CS", "ES", "Forget Efficacy / FE", "MU-18", "PrivLeak", "Refusal", "Forget Quality / FQ",
                 "Model Utility / MU", "ROUGE", "Prob", "Min-K%", "MIA AUC (Min-K) / AUC"):
        assert term in terms, term
