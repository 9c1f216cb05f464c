"""Evaluation during training (issue 23 §1–3) on the micro target: stop and guard on a forced trajectory, the
kept point, resume equality after a kill from on_probe, at most two checkpoints, probe time kept apart."""

import json
import time

import pytest
import torch

from obliviate import ObliviateError
from obliviate.unlearn import UnlearnConfig, unlearn


class Scripted:
    """A probe returning scripted values, one dict per call (step 0 first), and the weights it saw."""

    def __init__(self, **series):
        self.names = tuple(series)
        self.series = series
        self.seen = []  # the trainable weights at each call

    def __call__(self, model):
        i = len(self.seen)
        self.seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return {k: v[i] for k, v in self.series.items()}


def go(target, splits, probe, *, on_probe=None, reference=None, out=None, resume=False, **kw):
    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(**{"recipe": "npo+gd", "max_steps": 6, "batch_size": 4, "lr": 1e-3, "eval_every": 1, **kw})
    return unlearn(model, tok, forget, retain, cfg, probe=probe, on_probe=on_probe, reference=reference,
                   out_dir=out, resume=resume, progress=False)


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def same_weights(model, snapshot):
    return all(torch.equal(p, snapshot[n]) for n, p in model.named_parameters())


def test_stop_rule_ends_the_run_where_it_first_holds(target, splits, tmp_path):
    probe = Scripted(forget_prob=[0.9, 0.7, 0.5, 0.25, 0.1, 0.05, 0.01])
    model, log = go(target, splits, probe, out=tmp_path / "s", stop="forget_prob <= 0.30")
    assert [r["step"] for r in log] == [1, 2, 3]  # 0.25 at step 3 is the first value <= 0.30
    t = log.summary["trajectory"]
    assert (t["ended"], t["stopped_at"], t["kept_step"], t["cap"]) == ("stop", 3, 3, 6)
    recs = lines(tmp_path / "s" / "trajectory.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2, 3] and [r["stop"] for r in recs] == [False, False, False, True]
    assert recs[3]["metrics"] == {"forget_prob": 0.25} and {"lr", "loss", "forget", "retain"} <= set(recs[3])
    assert json.loads((tmp_path / "s" / "run.json").read_text())["trajectory"]["stopped_at"] == 3
    assert log.summary["steps"] == 3 and same_weights(model, probe.seen[3])


def test_a_stop_rule_that_never_fires_runs_to_the_cap_and_says_so(target, splits, tmp_path, capsys):
    probe = Scripted(forget_prob=[0.9] * 7)
    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(recipe="npo+gd", max_steps=6, batch_size=4, lr=1e-3, eval_every=2, stop="forget_prob <= 0.3")
    _, log = unlearn(model, tok, forget, retain, cfg, probe=probe, out_dir=tmp_path / "n")
    t = json.loads((tmp_path / "n" / "run.json").read_text())["trajectory"]
    assert t["ended"] == "cap" and t["stopped_at"] == 6 and "never fired" in t["message"]
    assert "stop rule 'forget_prob <= 0.3' never fired: ran to the cap (6 steps)" in capsys.readouterr().out
    assert [r["step"] for r in lines(tmp_path / "n" / "trajectory.jsonl")] == [0, 2, 4, 6]  # every 2 and the end


def test_guard_failure_stops_and_keeps_the_last_point_that_passed(target, splits, tmp_path):
    # guard: retain_prob >= 0.9 × 1.0; it passes at steps 0..2 (0.95, 0.91) and fails at step 3 (0.85)
    probe = Scripted(retain_prob=[1.0, 0.95, 0.91, 0.85, 0.99, 0.99, 0.99])
    model, log = go(target, splits, probe, out=tmp_path / "g", guard="retain_prob >= 0.9 * start")
    t = log.summary["trajectory"]
    assert (t["ended"], t["stopped_at"], t["kept_step"]) == ("guard", 3, 2)
    assert same_weights(model, probe.seen[2]) and not same_weights(model, probe.seen[3])
    assert [r["guard"] for r in lines(tmp_path / "g" / "trajectory.jsonl")] == [True, True, True, False]
    assert t["message"] == ("guard 'retain_prob >= 0.9 * start' failed at step 3; kept step 2 (guard failed: the "
                            "last point that passed (retain_prob >= 0.9 * start))")


def test_keep_best_keeps_the_admissible_point_the_selection_prefers(target, splits):
    # min forget_prob subject to retain_prob >= 0.95 × 1.0: step 3 (0.1) breaks the constraint, step 4 (0.2)
    # is the best admissible one; step 6 ties it (0.2) and the earlier point stays
    probe = Scripted(forget_prob=[0.9, 0.6, 0.4, 0.1, 0.2, 0.3, 0.2],
                     retain_prob=[1.0, 0.99, 0.98, 0.90, 0.97, 0.97, 0.97])
    model, log = go(target, splits, probe, keep="best", select="min forget_prob subject to retain_prob >= 0.95 * start")
    t = log.summary["trajectory"]
    assert (t["ended"], t["kept_step"], t["kept_metrics"]) == ("cap", 4, {"forget_prob": 0.2, "retain_prob": 0.97})
    assert same_weights(model, probe.seen[4])  # no run directory: the kept weights lived in memory
    assert t["kept_by"] == "select: min forget_prob subject to retain_prob >= 0.95 * start"


def test_unknown_metric_or_missing_reference_is_refused_before_any_work(target, splits, tmp_path):
    probe = Scripted(forget_prob=[0.5] * 7)
    with pytest.raises(ObliviateError, match="unknown metric 'retain_prob'"):
        go(target, splits, probe, out=tmp_path / "u", guard="retain_prob >= 0.9 * start")
    with pytest.raises(ObliviateError, match="give --reference-eval"):
        go(target, splits, probe, out=tmp_path / "u", stop="match:retain")
    with pytest.raises(ObliviateError, match="does not give"):
        go(target, splits, probe, out=tmp_path / "u", stop="match:retain", reference={"forget_prob": None})
    with pytest.raises(ObliviateError, match="needs a probe"):
        go(target, splits, None, out=tmp_path / "u")
    assert probe.seen == [] and not (tmp_path / "u").exists()


def test_match_retain_reads_the_reference(target, splits):
    probe = Scripted(forget_prob=[0.9, 0.6, 0.35, 0.2, 0.1, 0.1, 0.1])
    _, log = go(target, splits, probe, stop="match:retain", reference={"forget_prob": 0.3})
    assert log.summary["trajectory"]["stopped_at"] == 3


def test_probes_leave_the_numbers_of_a_plain_run_unchanged(target, splits, unlearn_target_dir):
    """eval_every with keep=last and no rules: the same weights and losses as a run without probes (rs draws
    noise every step: the probe must not touch the RNG)."""
    from obliviate.models.loading import load_model

    plain, log_plain = go(target, splits, None, recipe="npo+gd+rs", eval_every=None)
    probe = Scripted(forget_prob=[0.5] * 7)
    probed, log_probed = go(load_model(unlearn_target_dir), splits, probe, recipe="npo+gd+rs")
    assert len(probe.seen) == 7
    assert [r["loss"] for r in log_plain] == [r["loss"] for r in log_probed]
    assert same_weights(probed, dict(plain.named_parameters()))


def test_probe_time_is_kept_apart_from_training_time(target, splits):
    class Slow(Scripted):
        def __call__(self, model):
            time.sleep(0.2)
            return super().__call__(model)
    _, log = go(target, splits, Slow(forget_prob=[0.5] * 4), eval_every=3)  # points: 0, 3, 6
    t = log.summary["trajectory"]
    assert t["points"] == 3 and t["probe_seconds"] >= 0.6
    assert 0 < t["train_seconds"] < log.summary["seconds"] - 0.6  # the sleeps are not training
    assert t["probe_fraction"] == pytest.approx(t["probe_seconds"] / t["train_seconds"], rel=1e-2)


def test_killed_and_resumed_run_keeps_the_same_checkpoint(target, splits, tmp_path, world_dir, unlearn_target_dir):
    """A real probe; on_probe raises at step 4 (as optuna.TrialPruned would); --resume continues the trajectory,
    the selection and the weights exactly; at no point are more than two checkpoints on disk."""
    from obliviate.evaluate.probes import build_probe, probe_roles
    from obliviate.models.loading import load_model

    tok = target[1]
    probe = build_probe(tok, probe_roles(world_dir, forget="forget10"), size=4)
    kw = dict(recipe="npo+gd+rs", max_steps=8, eval_every=2, keep="best", select="max forget_gap")
    on_disk = []

    def watch(out):
        return lambda rec: on_disk.append(sorted(p.name for p in (out / "checkpoints").glob("*")))
    whole, log_whole = go(target, splits, probe, out=tmp_path / "w", on_probe=watch(tmp_path / "w"), **kw)

    class Killed(Exception):
        pass

    def die_at_4(rec):
        watch(tmp_path / "k")(rec)
        if rec["step"] == 4:
            raise Killed
    with pytest.raises(Killed):
        go(load_model(unlearn_target_dir), splits, probe, out=tmp_path / "k", on_probe=die_at_4, **kw)
    assert [r["step"] for r in lines(tmp_path / "k" / "trajectory.jsonl")] == [0, 2, 4]
    resumed, log_resumed = go(load_model(unlearn_target_dir), splits, probe, out=tmp_path / "k", resume=True,
                              on_probe=watch(tmp_path / "k"), **kw)
    a, b = lines(tmp_path / "w" / "trajectory.jsonl"), lines(tmp_path / "k" / "trajectory.jsonl")
    assert [(r["step"], r["metrics"], r["score"]) for r in a] == [(r["step"], r["metrics"], r["score"]) for r in b]
    ta, tb = log_whole.summary["trajectory"], log_resumed.summary["trajectory"]
    assert ta["kept_step"] == tb["kept_step"] and ta["kept_metrics"] == tb["kept_metrics"]
    assert same_weights(resumed, dict(whole.named_parameters()))
    assert on_disk and max(len(d) for d in on_disk) <= 2  # the kept point and the newest step checkpoint


def test_cli_stop_rule_with_a_reference_eval(unlearn_target_dir, world_dir, tmp_path, capsys, monkeypatch):
    """`obliviate unlearn ... eval_every=2 stop=match:retain --reference-eval`: the reference is read on the
    probe's items; an unknown metric is one line, exit 2, before the model is loaded."""
    import obliviate.commands.unlearn as command
    from obliviate.cli import main
    from obliviate.evaluate import EvalConfig, evaluate
    from obliviate.models.loading import load_model

    model, tok = load_model(unlearn_target_dir)
    evaluate(model, tok, world_dir, EvalConfig(max_new_tokens=4, embedder=None), out=tmp_path / "ref", progress=False)
    base = ["unlearn", "--model", str(unlearn_target_dir), "--data", str(world_dir), "--recipe", "npo+gd",
            "max_steps=6", "batch_size=4", "lr=3e-3", "eval_every=2", "probe_size=4"]
    code = main(base + ["--out", str(tmp_path / "u"), "stop=match:retain", "--reference-eval",
                        str(tmp_path / "ref" / "eval.json")])
    assert code == 0
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "u" / "run.json").read_text())["trajectory"]
    assert info["message"] in out and "evaluation during training: " in out
    assert info["reference"]["forget_prob"] is not None and info["stop"] == "match:retain"
    loaded = []
    monkeypatch.setattr(command, "load_model", lambda *a, **k: loaded.append(a) or load_model(*a, **k))
    assert main(base + ["--out", str(tmp_path / "bad"), "stop=forget_probability <= 0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown metric 'forget_probability'" in err and len(err.splitlines()) == 1 and loaded == []
    assert main(base[:-2] + ["--out", str(tmp_path / "bad2"), "--reference-eval", "x.json"]) == 2
    assert "set eval_every too" in capsys.readouterr().err
