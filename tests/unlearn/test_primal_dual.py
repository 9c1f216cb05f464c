"""The primal–dual retain weight in the loop (logged per step, follows λ ← max(0, λ + η(L_r − ε)) after the warm-up,
weights the loss, survives a resume), and the new objectives composed with regularisers / smoothers / LoRA end to end."""

import json
import math

import pytest
import torch

from obliviate.unlearn import UnlearnConfig, unlearn


def run(target, splits, recipe, **kw):
    (model, tok), (forget, retain) = target, splits
    opts = {k: kw.pop(k) for k in ("out_dir", "resume") if k in kw}
    return unlearn(model, tok, forget, retain, UnlearnConfig(recipe=recipe, **kw), progress=False, **opts)


def test_dual_weight_follows_the_update_rule_step_by_step(target, splits):
    """The tiny world's forget10 has 8 items, batch 4 → 2 steps per epoch; warm-up 1 epoch = 2 steps with λ fixed.
    Each row logs the λ it used; its loss is α·forget + λ·retain; the next λ is max(0, λ + η(retain − ε))."""
    eps, eta = 0.05, 4.0
    _, log = run(target, splits, "ga+gd", max_steps=7, batch_size=4, lr=1e-3, lam=0.5, retain_constraint=eps,
                 dual_step=eta, dual_warmup_epochs=1)
    lams = [r["lam"] for r in log]
    assert lams[:3] == [0.5, 0.5, 0.5]  # steps 1, 2 are the warm-up: the first update follows step 3
    for prev, row in zip(log[2:], log[3:]):
        assert row["lam"] == pytest.approx(max(0.0, prev["lam"] + eta * (prev["retain"] - eps)), abs=1e-12)
    for r in log:
        assert r["loss"] == pytest.approx(r["forget"] + r["lam"] * r["retain"], rel=1e-6)
        assert r["lam"] >= 0
    assert len(set(lams)) > 1  # λ moved


def test_dual_weight_never_goes_negative(target, splits):
    """ε far above the retain loss: every update lowers λ, which stops at 0 (and the loss is then the forget term)."""
    _, log = run(target, splits, "ga+gd", max_steps=5, batch_size=4, lr=1e-3, lam=0.2, retain_constraint=50.0,
                 dual_step=1.0)
    assert [r["lam"] for r in log] == [0.2, 0.0, 0.0, 0.0, 0.0]
    assert log[-1]["loss"] == pytest.approx(log[-1]["forget"])


def test_without_a_constraint_lambda_is_fixed_and_not_logged(target, splits):
    _, log = run(target, splits, "ga+gd", max_steps=2, batch_size=4, lr=1e-3, lam=0.3)
    assert "lam" not in log[0] and log[1]["loss"] == pytest.approx(log[1]["forget"] + 0.3 * log[1]["retain"])


def test_resume_restores_lambda(target, splits, tmp_path, monkeypatch):
    """Kill after the step-2 checkpoint of a 5-step run; the resumed run continues with the λ the whole run had at
    step 3 and reaches the same weights and log."""
    import obliviate.unlearn.loop as loop
    from obliviate.models.loading import load_model

    kw = dict(max_steps=5, batch_size=4, lr=1e-3, lam=0.5, retain_constraint=0.05, dual_step=4.0, checkpoint_every=2)
    whole, log_whole = run(target, splits, "ga+gd", out_dir=tmp_path / "whole", **kw)
    real_save = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(load_model(target[0].name_or_path), splits, "ga+gd", out_dir=tmp_path / "killed", **kw)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed, log_resumed = run(load_model(target[0].name_or_path), splits, "ga+gd", out_dir=tmp_path / "killed",
                               resume=True, **kw)
    assert [r["lam"] for r in log_resumed] == [r["lam"] for r in log_whole]
    assert log_whole[2]["lam"] != kw["lam"]  # the λ restored at step 3 is a moved one
    a, b = dict(whole.named_parameters()), dict(resumed.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in a)
    rows = [json.loads(x) for x in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["lam"] for r in rows] == [r["lam"] for r in log_whole]


@pytest.mark.parametrize("recipe,extra", [
    ("wga+gd+sam", {}), ("satimp+gd", {}), ("undial+kl", {}), ("ceu+gd+rs", {}), ("undial", {"lora": True, "lr": 1e-2}),
    ("wga+gd", {"retain_constraint": 0.05, "dual_step": 1.0}),
])
def test_new_objectives_compose_and_lower_the_forget_probability(target, splits, recipe, extra):
    _, log = run(target, splits, recipe, **{"max_steps": 8, "batch_size": 4, **extra})
    s = log.summary
    assert s["forget_prob_after"] < 0.8 * s["forget_prob_before"], s
    assert all(math.isfinite(r["loss"]) for r in log)
