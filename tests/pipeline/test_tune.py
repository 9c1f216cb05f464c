"""`obliviate tune` end to end on the micro model: pruning fed by the probe, storage reuse, errors before any trial."""

import json

import pytest

from obliviate.cli import main
from obliviate.config import load_config
from obliviate.unlearn import UnlearnConfig

optuna = pytest.importorskip("optuna")


def _argv(target, world, out, *extra):
    return ["tune", "--model", str(target), "--data", str(world), "--recipe", "ga+gd", "--out", str(out),
            "batch_size=4", "probe_size=4", *extra]


def test_tune_prunes_the_clearly_worse_trial(unlearn_target_dir, world_dir, tmp_path):
    """Three enqueued trials in a journal-file study: two at lr 3e-3 (forget Prob falls), then one at lr 1e-7
    (it stays at the start). With two startup trials the median pruner compares the third trial's forget Prob
    after its first epoch with the first two's at that step: higher -> pruned. Equal values at step 0 (every trial
    starts from the same model) do not prune."""
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "study.log"
    study = optuna.create_study(storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))),
                                study_name="tune-ga+gd", direction="minimize")
    for lr in (3e-3, 3e-3, 1e-7):
        study.enqueue_trial({"lr": lr})
    out = tmp_path / "tune"
    code = main(_argv(unlearn_target_dir, world_dir, out, "--n-trials", "3", "--space", "lr=1e-7..1e-2:log",
                      "--storage", f"journal:{journal}", "epochs=3",
                      "--objective", "min forget_prob subject to retain_prob >= 0.3 * start", "eval_every=epoch", "pruner_startup_trials=2"))
    assert code == 0
    s = json.loads((out / "tune.json").read_text())
    assert [t["state"] for t in s["trials"]] == ["complete", "complete", "pruned"]
    pruned = s["trials"][2]
    assert pruned["pruned_step"] > 0 and s["counts"]["pruned"] == 1
    run = out / pruned["run_dir"]
    assert json.loads((run / "trial.json").read_text())["state"] == "pruned"
    assert (run / "trajectory.jsonl").is_file() and (out / s["trials"][0]["run_dir"] / "trajectory.jsonl").is_file()
    # every trial's forget Prob is in its metrics; the pruned one's stayed above the completed ones'
    assert pruned["metrics"]["forget_prob"] > max(t["metrics"]["forget_prob"] for t in s["trials"][:2])
    # best.yaml: a config `obliviate unlearn --config` loads, with the best trial's values
    assert s["trials_this_run"] == 3
    assert [t["number"] for t in s["best"]] == [0]  # ties (the same lr and seed) keep the earlier trial
    cfg = load_config(UnlearnConfig, out / "best.yaml")
    assert cfg.recipe == "ga+gd" and cfg.lr == pytest.approx(3e-3) and cfg.epochs == 3
    assert (out / "front.png").is_file()
    # --keep-models front (default): only the best trial keeps its weights and checkpoints
    assert (out / s["trials"][0]["run_dir"] / "model.safetensors").is_file()
    for t in s["trials"][1:]:
        assert not (out / t["run_dir"] / "model.safetensors").exists()
        assert not (out / t["run_dir"] / "checkpoints").exists() and (out / t["run_dir"] / "run.json").is_file()
    md = (out / "report.md").read_text()
    assert "## Tuning (obliviate tune)" in md and "not computed: 2 completed trial(s)" in md
    assert (out / "report.html").is_file() and (out / "run.json").is_file()
    assert json.loads((out / "run.json").read_text())["config"]["pruner_startup_trials"] == 2


def test_rerun_continues_the_study(unlearn_target_dir, world_dir, tmp_path):
    """The default SQLite study in --out: a second invocation adds trials to the same study, and the sampler
    (seeded by seed + trials so far) proposes new values, the same in a fresh directory with the same seed."""
    out = tmp_path / "tune"
    argv = _argv(unlearn_target_dir, world_dir, out, "--n-trials", "1", "--space", "lr=1e-4..1e-2:log",
                 "max_steps=2", "eval_every=1", "--seed", "3")
    assert main(argv) == 0
    first = json.loads((out / "tune.json").read_text())
    assert main(argv) == 0
    second = json.loads((out / "tune.json").read_text())
    assert len(first["trials"]) == 1 and len(second["trials"]) == 2 and second["trials_this_run"] == 1
    assert (out / "study.db").is_file()
    assert second["trials"][0]["params"] == first["trials"][0]["params"]
    assert second["trials"][1]["params"] != second["trials"][0]["params"]
    again = tmp_path / "again"
    assert main(_argv(unlearn_target_dir, world_dir, again, "--n-trials", "1", "--space", "lr=1e-4..1e-2:log",
                      "max_steps=2", "eval_every=1", "--seed", "3")) == 0
    assert json.loads((again / "tune.json").read_text())["trials"][0]["params"] == first["trials"][0]["params"]


@pytest.mark.parametrize("extra, says", [
    (["--objective", "min forget_prbo"], "unknown metric 'forget_prbo'"),
    (["--space", "lr=1e-2..1e-4:log"], "low 0.01 must be below high 0.0001"),
    (["--space", "colour=1..2"], "'colour' is not an UnlearnConfig field"),
    (["--objective", "pareto max forget_gap, max retain_prob", "--pruner", "median"], "pareto objective"),
    (["--objective", "min forget_prob subject to forget_prob <= retain:forget_prob"], "give --reference-eval"),
])
def test_bad_input_is_one_line_before_any_trial(unlearn_target_dir, world_dir, tmp_path, capsys, extra, says):
    out = tmp_path / "tune"
    assert main(_argv(unlearn_target_dir, world_dir, out, "--n-trials", "1", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1
    assert not (out / "trials").exists()


def test_pareto_study_writes_its_front(unlearn_target_dir, world_dir, tmp_path):
    """A multi-objective study: no pruning, `best` = Optuna's Pareto front, one config per front trial."""
    out = tmp_path / "tune"
    assert main(_argv(unlearn_target_dir, world_dir, out, "--n-trials", "3", "--objective",
                      "pareto max forget_gap, max retain_prob", "--space", "lr=1e-5..1e-2:log", "max_steps=2",
                      "eval_every=1")) == 0
    s = json.loads((out / "tune.json").read_text())
    assert s["directions"] == ["maximize", "maximize"] and s["counts"] == {"complete": 3, "pruned": 0, "fail": 0,
                                                                             "running": 0}
    front = {t.number for t in optuna.load_study(study_name="tune-ga+gd",
                                                 storage=f"sqlite:///{out / 'study.db'}").best_trials}
    assert {b["number"] for b in s["best"]} == front
    for b in s["best"]:  # every front trial is non-dominated among the completed ones, and has its config
        assert not any(all(o >= v for o, v in zip(t["values"], b["values"])) and t["values"] != b["values"]
                       for t in s["trials"])
        if len(front) > 1:
            assert load_config(UnlearnConfig, out / "front" / f"trial-{b['number']:04d}.yaml").lr == \
                pytest.approx(b["params"]["lr"])
    assert load_config(UnlearnConfig, out / "best.yaml").keep == "last"  # no single objective to select by
