"""Continual unlearning on the tiny world (10 authors × 8 questions, forget10 = the last author).

Tasks, retain sets, reference switching, cumulative re-evaluation, resume after a killed task, the CLI.
"""

import json
import math

import pytest

from obliviate import ObliviateError
from obliviate.data.loading import load_split
from obliviate.evaluate import EvalConfig
from obliviate.report.scenarios import continual_table
from obliviate.scenarios.continual import ContinualConfig, continual, plan_tasks, task_retain
from obliviate.unlearn import UnlearnConfig

ECFG = EvalConfig(max_new_tokens=8, embedder=None)


def _authors(records):
    out = []
    for r in records:
        if not out or out[-1] != r["author"]:
            out.append(r["author"])
    return out


def test_task_splits_and_retain_sets_by_hand(world_dir):
    full, forget = load_split(world_dir, "full"), load_split(world_dir, "forget10")
    authors = _authors(full)  # 10 authors, 8 questions each, in file order
    assert len(authors) == 10 and len(full) == 80 and len(forget) == 8
    tasks, base = plan_tasks(full, forget, 3)
    # task 1 = forget10 = the last author; task 2 the author before; task 3 the one before that
    assert [_authors(t) for t in tasks] == [[authors[9]], [authors[8]], [authors[7]]]
    assert tasks[0] == forget
    assert base == full[:56] and _authors(base) == authors[:7]
    # task t trains against base ∪ the tasks not yet unlearned
    assert task_retain(tasks, base, 1) == full[:56] + full[64:72] + full[56:64]
    assert task_retain(tasks, base, 2) == full[:56] + full[56:64]
    assert task_retain(tasks, base, 3) == full[:56]
    # the paper's forget10 layout: 9 tasks, the base retain split keeps one author (retain10)
    tasks9, base9 = plan_tasks(full, forget, 9)
    assert len(tasks9) == 9 and _authors(base9) == [authors[0]]


def test_plan_errors_and_task_id_records(world_dir):
    full, forget = load_split(world_dir, "full"), load_split(world_dir, "forget10")
    with pytest.raises(ObliviateError, match="at most 9 tasks"):
        plan_tasks(full, forget, 10)
    with pytest.raises(ObliviateError, match="holds 8 item"):
        plan_tasks(full, forget, 2, retain=load_split(world_dir, "retain90"))
    with pytest.raises(ObliviateError, match="not the last 8 items"):
        plan_tasks(full, full[:8], 2)
    with pytest.raises(ObliviateError, match="splits author"):  # 12-item tasks cut authors in half
        plan_tasks(full, full[-12:], 2)
    # the paper's files: records carry task_id; tasks follow it, the base retain split is given
    pool = [{**r, "task_id": str(2 - i // 8)} for i, r in enumerate(full[-16:])]
    tasks, base = plan_tasks(None, pool, 2, retain=full[:64])
    assert tasks == [pool[8:], pool[:8]] and base == full[:64]
    with pytest.raises(ObliviateError, match="2 task_id values"):
        plan_tasks(None, pool, 3, retain=full[:64])


def _run(target_dir, world_dir, out, recipe="npo+gd", reference="previous", tasks=2, **kw):
    from obliviate.models.loading import load_model

    model, tok = load_model(target_dir)
    ucfg = UnlearnConfig(recipe=recipe, reference=reference, max_steps=2, batch_size=4, lr=3e-3)
    return continual(model, tok, world_dir, ContinualConfig(tasks=tasks, **kw), ucfg, out=out, eval_cfg=ECFG,
                     model_name=str(target_dir), load_model=load_model, progress=False)


def _first_forget_loss(out, t):
    return json.loads((out / f"tasks/task_{t:02d}/log.jsonl").read_text().splitlines()[0])["forget"]


def test_reference_switching(unlearn_target_dir, world_dir, tmp_path):
    """NPO's first-step loss is (2/β)·log 2 exactly when the reference is the model the task starts from.

    β = 0.1: L = −(2/β)·mean log σ(β·(NLL_θ − NLL_ref)) = 20·log 2 = 13.8629 at θ = ref. With
    reference=original, task 2 starts from task 1's model but compares with the target: L ≠ 20·log 2.
    """
    prev = _run(unlearn_target_dir, world_dir, tmp_path / "prev")
    orig = _run(unlearn_target_dir, world_dir, tmp_path / "orig", reference="original")
    assert (prev["reference"], orig["reference"]) == ("previous", "original")
    for out in (tmp_path / "prev", tmp_path / "orig"):
        assert _first_forget_loss(out, 1) == pytest.approx(20 * math.log(2), rel=1e-4)
    assert _first_forget_loss(tmp_path / "prev", 2) == pytest.approx(20 * math.log(2), rel=1e-4)
    assert abs(_first_forget_loss(tmp_path / "orig", 2) - 20 * math.log(2)) > 1e-3
    # task 1 is the same in both runs; they part at task 2
    assert prev["rows"][1]["current"] == orig["rows"][1]["current"]
    assert prev["rows"][2]["current"] != orig["rows"][2]["current"]
    with pytest.raises(ObliviateError, match="has no effect"):
        _run(unlearn_target_dir, world_dir, tmp_path / "me", recipe="me+gd", reference="original")


def test_cumulative_reevaluation_and_kept_models(unlearn_target_dir, world_dir, tmp_path):
    from obliviate.evaluate import load_results

    out = tmp_path / "run"
    info = _run(unlearn_target_dir, world_dir, out, recipe="ga+gd", tasks=3)
    rows = info["rows"]
    assert [r["task"] for r in rows] == [0, 1, 2, 3] and len(rows[0]["pool_tasks"]) == 3
    assert [len(r["earlier"]) for r in rows[1:]] == [0, 1, 2]
    full = load_split(world_dir, "full")
    # after task 3 the forget role holds tasks 1, 2, 3 in order; the row slices it per task
    evaluated = json.loads((out / "tasks/task_03/eval/data/forget.json").read_text())
    assert [r["question"] for r in evaluated] == [r["question"] for r in full[72:] + full[64:72] + full[56:64]]
    items = load_results(out / "tasks/task_03/eval")["splits"]["forget"]["items"]
    for j, part in enumerate(rows[3]["earlier"] + [rows[3]["current"]]):
        sl = items[8 * j:8 * (j + 1)]
        assert part["rouge_l_recall"] == pytest.approx(sum(it["rouge_l_recall"] for it in sl) / 8)
        assert part["prob"] == pytest.approx(sum(it["prob"] for it in sl) / 8)
    # earlier tasks are re-scored by the later model, not copied from their own row
    assert rows[3]["earlier"][0]["prob"] != rows[1]["current"]["prob"]
    assert rows[3]["earlier_all"]["prob"] == pytest.approx(sum(it["prob"] for it in items[:16]) / 16)
    # retain role: retain_perturbed (first author) is outside the pool; world facts evaluated
    assert "retain" in rows[3] and "world_facts" in rows[3] and rows[3]["model_utility"] > 0
    # only the latest task keeps its weights (without keep_models)
    kept = [t for t in (1, 2, 3) if list((out / f"tasks/task_{t:02d}").glob("*.safetensors"))]
    assert kept == [3]
    headers, table = continual_table(info)
    assert [r[0] for r in table] == [0, 1, 2, 3] and len(headers) == len(table[0])


def test_resume_after_a_killed_task(unlearn_target_dir, world_dir, tmp_path, monkeypatch):
    import obliviate.unlearn as U

    whole = _run(unlearn_target_dir, world_dir, tmp_path / "whole", keep_models=True)
    real, calls = U.unlearn, []

    def killed_on_task_2(*a, **k):
        calls.append(k["out_dir"].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(U, "unlearn", killed_on_task_2)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run(unlearn_target_dir, world_dir, out)
    assert [r["task"] for r in json.loads((out / "continual.json").read_text())["rows"]] == [0, 1]
    calls.clear()
    resumed = _run(unlearn_target_dir, world_dir, out)
    assert calls == ["task_02"]  # task 1 was not unlearned again
    for a, b in zip(whole["rows"], resumed["rows"]):
        assert {k: v for k, v in a.items() if not k.endswith("seconds")} == \
               {k: v for k, v in b.items() if not k.endswith("seconds")}
    with pytest.raises(ObliviateError, match="other settings"):
        _run(unlearn_target_dir, world_dir, out, tasks=3)


def test_cli_continual_and_report(unlearn_target_dir, world_dir, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "runs" / "ga"
    code = main(["continual", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--tasks", "2",
                 "--recipe", "ga+gd", "--out", str(out), "--max-new-tokens", "8", "max_steps=2", "batch_size=4"])
    assert code == 0
    text = capsys.readouterr().out
    assert "| task |" in text and (out / "continual.json").is_file() and (out / "continual.png").is_file()
    assert json.loads((out / "continual.json").read_text())["settings"]["unlearn"]["max_steps"] == 2
    assert main(["continual", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "me+gd",
                 "--reference", "original", "--out", str(tmp_path / "x")]) == 2
    assert "has no effect" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "runs")]) == 0
    html = (tmp_path / "runs/report.html").read_text()
    assert "Continual unlearning" in html and "ga+gd" in html


def test_a_shared_cache_evaluates_the_starting_model_once(unlearn_target_dir, world_dir, tmp_path, monkeypatch):
    """With cache_dir, a second continual run of the same target reuses the before-task-1 evaluation (the demo
    runs 3 recipes × seeds from one target), and its results are the same as without sharing."""
    from obliviate.evaluate import stages
    from obliviate.models.loading import load_model

    calls = []
    real = stages.forward_stage
    monkeypatch.setattr(stages, "forward_stage", lambda *a, **k: calls.append(a[2]) or real(*a, **k))

    def run(out, recipe, cache_dir):
        model, tok = load_model(unlearn_target_dir)
        ucfg = UnlearnConfig(recipe=recipe, max_steps=2, batch_size=4, lr=3e-3)
        return continual(model, tok, world_dir, ContinualConfig(tasks=1), ucfg, out=out, eval_cfg=ECFG,
                         model_name=str(unlearn_target_dir), load_model=load_model, progress=False,
                         cache_dir=cache_dir)

    first = run(tmp_path / "a", "ga+gd", tmp_path / "cache")
    n_first = len(calls)
    second = run(tmp_path / "b", "me+gd", tmp_path / "cache")
    roles = set(calls[:n_first])
    assert roles >= {"forget", "retain"}
    # run b scored only its unlearned model: one forward per role instead of two
    assert len(calls) - n_first == n_first // 2
    strip = lambda row: {k: v for k, v in row.items() if k != "eval_seconds"}  # noqa: E731
    assert strip(first["rows"][0]) == strip(second["rows"][0])
    unshared = run(tmp_path / "c", "me+gd", None)
    assert strip(unshared["rows"][0]) == strip(second["rows"][0])
    assert len(list((tmp_path / "cache").iterdir())) == 1  # the target only: unlearned models cache in their runs


def test_each_task_evaluates_during_training_with_its_own_forget_items(unlearn_target_dir, world_dir, tmp_path):
    """eval_every in the UnlearnConfig reaches every task: the probe samples that task's forget items."""
    from obliviate.models.loading import load_model

    model, tok = load_model(unlearn_target_dir)
    ucfg = UnlearnConfig(recipe="npo+gd", max_steps=4, batch_size=4, lr=3e-3, eval_every=2, probe_size=3,
                         keep="best", select="min forget_prob")
    out = tmp_path / "c"
    continual(model, tok, world_dir, ContinualConfig(tasks=2), ucfg, out=out, eval_cfg=ECFG,
              model_name=str(unlearn_target_dir), load_model=load_model, progress=False)
    for t in (1, 2):
        tdir = out / f"tasks/task_{t:02d}"
        points = [json.loads(x) for x in (tdir / "trajectory.jsonl").read_text().splitlines()]
        assert [p["step"] for p in points] == [0, 2, 4] and "forget_prob" in points[0]["metrics"]
        assert json.loads((tdir / "run.json").read_text())["trajectory"]["kept_by"] == "select: min forget_prob"
    # the two tasks forget different authors: their step-0 forget probes differ
    first = [json.loads((out / f"tasks/task_{t:02d}/trajectory.jsonl").read_text().splitlines()[0]) for t in (1, 2)]
    assert first[0]["metrics"]["forget_prob"] != first[1]["metrics"]["forget_prob"]
