"""The card's lm-eval section: eval.json `harness` shown per model and task / group, absent when no eval has one."""

import json
from pathlib import Path

HARNESS = {"harness": "lm-eval", "version": "0.4.13", "data": "data/hub", "limit": None,
           "tasks": {"wmdp_bio": {"metrics": {"acc": 0.25, "acc_stderr": 0.1118}, "n": 16, "version": 1}},
           "groups": {"wmdp": {"metrics": {"acc": 0.3, "acc_stderr": 0.1}, "n": 20}}}


def _run(root: Path, target_extra: dict) -> Path:
    """A one-recipe, one-seed demo run directory (the layout `report.runs.collect` reads)."""
    items = [{"question": "q", "answer": "a", "generation": "g", "truth_ratio": 0.5}]
    ev = {"splits": {r: {"items": items, "means": {"prob": 0.5}} for r in ("forget", "retain")},
          "aggregates": {"forget_quality": 0.5, "model_utility": 0.5}}
    files = {"demo.json": {"config": {"recipes": ["ga"], "preset": "tiny", "model_size": "micro", "forget": "forget10",
                                      "seeds": 1}, "timings": {}, "versions": {}, "wall_seconds": 1.0},
             "eval/target/eval.json": {**ev, **target_extra}, "eval/retain/eval.json": ev,
             "runs/ga/seed0/eval/eval.json": ev}
    for name, obj in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(obj))
    for stage in ("eval", "runs/ga/seed0/eval"):
        (root / stage / "stage.json").write_text(json.dumps({"key": {}, "seconds": 1.0}))
    return root


def test_table_rows_from_eval_json():
    from obliviate.report.harness import harness_table

    data = {"target": {"harness": HARNESS}, "retain": {}, "recipes": {"npo": [{"eval": {"harness": HARNESS}}]}}
    headers, rows = harness_table(data)
    assert headers[:3] == ["model", "task / group", "acc ↓ forget task · ↑ utility task"]  # its direction per task
    assert rows[0] == ["target (before)", "wmdp_bio", 0.25, 0.1118, 16, "0.4.13 v1"]
    assert rows[1] == ["target (before)", "wmdp (group)", 0.3, 0.1, 20, "0.4.13"]
    assert [r[0] for r in rows[2:]] == ["npo", "npo"]
    assert harness_table({"target": {}, "retain": {}, "recipes": {}}) is None


def test_card_shows_the_section_only_with_harness_results(tmp_path):
    from obliviate.report.card import write_report

    run = _run(tmp_path / "plain", {})
    write_report(run)
    assert "lm-eval tasks" not in (run / "report.md").read_text()
    run = _run(tmp_path / "with", {"harness": HARNESS})
    write_report(run)
    md = (run / "report.md").read_text()
    assert "## lm-eval tasks" in md and "| target (before) | wmdp_bio | 0.25" in md
    assert "lm-eval tasks" in (run / "report.html").read_text()
