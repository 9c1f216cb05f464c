"""Experiment tracking through accelerate's trackers (issue 26 §6): a TensorBoard run's scalars equal log.jsonl and
trajectory.jsonl, nothing is logged or imported when `log_with` is unset, a missing package / unknown tracker is a
one-line error before any model loads."""

import json
import subprocess
import sys

import pytest

from obliviate import ObliviateError
from obliviate.cli import main


def scalars(logdir):
    """{tag: {step: value}} of the TensorBoard event files under `logdir` (tensorboard's EventAccumulator)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_unlearn_logs_losses_lr_weights_and_probe_metrics_to_tensorboard(unlearn_target_dir, world_dir, tmp_path):
    out = tmp_path / "npo_gd"
    code = main(["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "npo+gd",
                 "--out", str(out), "max_steps=4", "batch_size=4", "lr=3e-3", "eval_every=2", "probe_size=4",
                 "lam=0.5", "log_with=tensorboard"])
    assert code == 0
    runs = sorted((out / "trackers").iterdir())
    assert [r.name for r in runs] == ["npo_gd"]  # <run dir>/trackers/<run name>/
    got = scalars(runs[0])
    log, traj = lines(out / "log.jsonl"), lines(out / "trajectory.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4] and [r["step"] for r in traj] == [0, 2, 4]
    for key in ("loss", "forget", "retain", "lr", "grad_norm"):  # every part of the composed loss, the lr
        assert got[f"train/{key}"] == pytest.approx({r["step"]: r[key] for r in log}, rel=1e-6), key
    assert got["train/lam"] == {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5} and set(got["train/alpha"].values()) == {1.0}
    assert log[0]["loss"] == pytest.approx(log[0]["forget"] + 0.5 * log[0]["retain"])
    assert "train/step" not in got  # the step is the x axis
    metrics = {m for r in traj for m, v in r["metrics"].items() if v is not None}
    assert "forget_prob" in metrics
    for m in metrics:  # the probe's metrics at steps 0, 2, 4
        assert got[f"probe/{m}"] == pytest.approx({r["step"]: r["metrics"][m] for r in traj}, rel=1e-6), m


def test_dual_ascent_lambda_is_logged_as_each_step_used_it(target, splits, tmp_path):
    """With a tracker_dir of its own, the run is named after its run directory's path (runs may share the dir)."""
    from obliviate.models.tracking import run_name
    from obliviate.unlearn import UnlearnConfig, unlearn

    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(recipe="ga+gd", max_steps=3, batch_size=4, lr=1e-3, retain_constraint=0.0, dual_step=0.5,
                        log_with="tensorboard", tracker_dir=str(tmp_path / "tb"))
    _, log = unlearn(model, tok, forget, retain, cfg, out_dir=tmp_path / "run", progress=False)
    (logdir,) = {f.parent for f in (tmp_path / "tb").rglob("events.out.tfevents.*") if f.parent.name == "run"}
    assert logdir.relative_to(tmp_path / "tb").as_posix() == run_name(tmp_path / "run", nested=False)
    assert run_name(tmp_path / "run", nested=False).endswith(tmp_path.relative_to("/").as_posix() + "/run")
    got = scalars(logdir)
    assert got["train/lam"] == pytest.approx({r["step"]: r["lam"] for r in log})
    assert len(set(got["train/lam"].values())) == 3  # λ moves every step: the logged one is the step's own
    assert not (tmp_path / "run" / "trackers").exists()  # tracker_dir given: nothing in the run directory


class Scripted:
    """A probe returning `forget_prob` from a list, one value per call (step 0 first); `stop_at`: the step at which
    its on_probe raises (a run killed there, resumable)."""

    names = ("forget_prob",)

    def __init__(self, values):
        self.values, self.calls = values, 0

    def __call__(self, model):
        self.calls += 1
        return {"forget_prob": self.values[self.calls - 1]}


def test_a_resumed_run_continues_its_curves_and_a_killed_one_closes_its_tracker(target, splits, tmp_path,
                                                                              unlearn_target_dir, monkeypatch):
    from obliviate.models import tracking
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn, loop

    closed = []
    monkeypatch.setattr(loop, "stop_trackers", lambda acc: (closed.append([t.name for t in acc.trackers]),
                                                            tracking.stop_trackers(acc)))

    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(recipe="npo+gd", max_steps=4, batch_size=4, lr=1e-3, eval_every=1, log_with="tensorboard")
    values = [0.9, 0.8, 0.7, 0.6, 0.5]

    def kill_at_2(record):
        if record["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        unlearn(model, tok, forget, retain, cfg, out_dir=tmp_path / "r", probe=Scripted(values), on_probe=kill_at_2,
                progress=False)
    assert closed == [["tensorboard"]]  # the kill closed the tracker
    first = scalars(tmp_path / "r" / "trackers" / "r")  # everything up to the kill is on disk
    assert sorted(first["train/loss"]) == [1, 2]
    assert first["probe/forget_prob"] == pytest.approx({0: 0.9, 1: 0.8, 2: 0.7})
    model, tok = load_model(unlearn_target_dir)  # the model the run started from (its fingerprint is checked)
    probe = Scripted(values)
    probe.calls = 3  # the resumed run probes steps 3 and 4
    unlearn(model, tok, forget, retain, cfg, out_dir=tmp_path / "r", probe=probe, resume=True, progress=False)
    assert len(closed) == 2
    got = scalars(tmp_path / "r" / "trackers" / "r")
    log = lines(tmp_path / "r" / "log.jsonl")
    assert got["train/loss"] == pytest.approx({r["step"]: r["loss"] for r in log}, rel=1e-6) and len(log) == 4
    assert got["probe/forget_prob"] == pytest.approx(dict(enumerate(values)))


def test_only_the_main_process_logs_under_accelerate_launch(unlearn_target_dir, world_dir, tmp_path, free_port):
    """Two CPU processes (DDP over gloo): one TensorBoard run, its losses those of log.jsonl (the reduced ones)."""
    import os
    from pathlib import Path

    ddp = Path(__file__).resolve().parents[2] / "src/obliviate/configs/accelerate/cpu_ddp.yaml"
    out = tmp_path / "two"
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ddp),
                           "--main_process_port", str(free_port), "-m", "obliviate", "unlearn", "--model",
                           str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "npo+gd", "--out", str(out),
                           "max_steps=2", "batch_size=4", "lr=3e-3", "log_with=tensorboard"],
                          env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (out / "trackers").iterdir()] == ["two"]
    events = sorted((out / "trackers" / "two").glob("events.out.tfevents.*"))
    assert len(events) == 1  # one writer: the main process
    got, log = scalars(out / "trackers" / "two"), lines(out / "log.jsonl")
    for key in ("loss", "forget", "retain"):
        assert got[f"train/{key}"] == pytest.approx({r["step"]: r[key] for r in log}, rel=1e-6), key


def test_finetune_logs_its_loss_and_lr(base_dir, world_dir, tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(base_dir), "--data", str(world_dir), "--out", str(out), "max_steps=3",
                 "batch_size=8", "log_with=tensorboard"]) == 0
    got = scalars(out / "trackers" / "ft")
    log = lines(out / "train_log.jsonl")
    for key in ("loss", "lr", "grad_norm"):
        assert got[f"train/{key}"] == pytest.approx({r["step"]: r[key] for r in log}, rel=1e-6), key


def test_nothing_is_logged_or_imported_when_log_with_is_unset(unlearn_target_dir, world_dir, tmp_path):
    """In a fresh interpreter (this one may have imported tensorboard in another test)."""
    script = f"""
import sys
from obliviate.cli import main
assert main(["unlearn", "--model", {str(unlearn_target_dir)!r}, "--data", {str(world_dir)!r}, "--recipe", "ga+gd",
             "--out", {str(tmp_path / "plain")!r}, "max_steps=2", "batch_size=4", "eval_every=1", "probe_size=2"]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorboard", "tensorboardX", "wandb", "mlflow",
                "trackio") or m == "torch.utils.tensorboard")
print(loaded)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "plain" / "trackers").exists()
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["config"]["log_with"] is None


def test_a_missing_tracker_package_is_one_line_naming_the_extra_before_any_model_loads(world_dir, tmp_path, capsys,
                                                                                          monkeypatch):
    """--model does not exist: loading it would fail with another message."""
    from obliviate.models import tracking

    monkeypatch.setattr(tracking, "tracker_available", lambda name: False)
    for verb, extra in (("unlearn", ["--recipe", "ga"]), ("finetune", [])):
        code = main([verb, "--model", str(tmp_path / "no-model"), "--data", str(world_dir), "--out",
                     str(tmp_path / verb), *extra, "log_with=wandb"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "log_with=wandb needs the wandb package" in err and "pip install 'obliviate[wandb]'" in err
    with pytest.raises(ObliviateError, match=r"obliviate\[track\]"):
        tracking.check_tracker("tensorboard")


def test_an_unknown_tracker_lists_the_valid_ones():
    from obliviate.models.finetune import FinetuneConfig
    from obliviate.unlearn import UnlearnConfig

    for cls in (UnlearnConfig, FinetuneConfig):
        with pytest.raises(ObliviateError, match="log_with 'tensorbord' is unknown; choose one of tensorboard, wandb, "
                                                 "trackio, mlflow"):
            cls(log_with="tensorbord")


def test_demo_checks_the_tracker_of_its_unlearn_overrides_before_any_stage(monkeypatch):
    from obliviate.models import tracking
    from obliviate.pipeline.config import DemoConfig

    monkeypatch.setattr(tracking, "tracker_available", lambda name: name == "tensorboard")
    assert DemoConfig(unlearn_overrides="*:log_with=tensorboard").overrides_for("ga+gd")["log_with"] == "tensorboard"
    with pytest.raises(ObliviateError, match="needs the mlflow package"):
        DemoConfig(unlearn_overrides="npo+gd:log_with=mlflow")
    with pytest.raises(ObliviateError, match="log_with 'tb' is unknown"):
        DemoConfig(continual=["npo+gd:log_with=tb"])


def test_tracking_fields_are_not_part_of_a_cached_results_key():
    from obliviate.models.tracking import result_fields
    from obliviate.unlearn import UnlearnConfig
    from obliviate.unlearn.checkpoint import RESUMABLE

    plain = result_fields(UnlearnConfig(recipe="npo+gd"))
    assert result_fields(UnlearnConfig(recipe="npo+gd", log_with="tensorboard", tracker_dir="tb")) == plain
    assert result_fields(UnlearnConfig(recipe="npo+gd", lr=1e-4)) != plain and "lr" in plain
    assert {"log_with", "tracker_dir"} <= set(RESUMABLE)


def test_run_names_come_from_the_run_directory(tmp_path, monkeypatch):
    from obliviate.models.tracking import run_name

    monkeypatch.chdir(tmp_path)
    stage = tmp_path / "runs" / "demo" / "runs" / "npo_gd" / "seed0" / "model.partial"  # a pipeline stage at work
    assert run_name(stage, nested=True) == "model"
    assert run_name(stage, nested=False) == "runs/demo/runs/npo_gd/seed0/model"
    assert run_name("runs/x", nested=False) == "runs/x" and run_name(None, nested=False) == "run"
    assert run_name("/elsewhere/r", nested=False) == "elsewhere/r"


def test_tensorboard_without_a_directory_is_refused(target, splits):
    from obliviate.unlearn import UnlearnConfig, unlearn

    (model, tok), (forget, _) = target, splits
    with pytest.raises(ObliviateError, match="log_with=tensorboard needs a directory"):
        unlearn(model, tok, forget, None, UnlearnConfig(recipe="ga", max_steps=1, log_with="tensorboard"),
                progress=False)
