"""The loop: accumulation, resume, cached reference log-probs, NaN stop, the 'changed nothing' warning,
the run directory, LoRA, and every recipe end to end on the micro target."""

import copy
import doctest
import json
import math
import warnings

import pytest
import torch
from torch.testing import assert_close

import obliviate.unlearn.batch as batch_module
from obliviate import ObliviateError
from obliviate.models.logps import sequence_logps
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import BatchIndices, build_data, cache_ref_logps, collate, plan


def weights(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run(target, splits, recipe, **kw):
    (model, tok), (forget, retain) = target, splits
    opts = {k: kw.pop(k) for k in ("out_dir", "resume", "overwrite", "ref_model") if k in kw}
    return unlearn(model, tok, forget, retain, UnlearnConfig(recipe=recipe, **kw), progress=False, **opts)


def test_unlearn_batch_doctest():
    assert doctest.testmod(batch_module).failed == 0


def test_only_the_views_a_recipe_needs_are_tokenized(target, splits):
    tok, (forget, retain) = target[1], splits
    ga = build_data(tok, forget, retain, set())
    assert ga.retain is None and ga.alternate is None and ga.retain_alternate is None
    full = build_data(tok, forget, retain, {"retain", "alternate", "retain_alternate"}, refusals=["No idea.", "Pass."])
    assert len(full.alternate) == len(forget) and len(full.retain_alternate) == len(retain)
    b = collate(full, BatchIndices([0, 1], [2, 3]))
    assert b.forget["input_ids"].shape[1] == max(len(full.forget[i]["input_ids"]) for i in (0, 1))  # dynamic padding


def test_plan_is_deterministic_and_pairs_each_forget_item_with_a_retain_item():
    a = plan(10, 50, batch_size=4, batches=7, seed=3)
    assert a == plan(10, 50, batch_size=4, batches=7, seed=3)
    assert a != plan(10, 50, batch_size=4, batches=7, seed=4)
    assert sorted(i for mb in a[:3] for i in mb.forget) == list(range(10))  # one epoch covers the forget set
    assert all(len(mb.forget) == len(mb.retain) and all(0 <= r < 50 for r in mb.retain) for mb in a)


def test_cached_reference_logps_equal_a_live_reference_model(target, splits):
    (model, tok), (forget, _) = target, splits
    live = copy.deepcopy(model)
    data = build_data(tok, forget, None, {"alternate"}, refusals=["I cannot say.", "No idea at all."])
    cache_ref_logps(model, data, batch_size=3)  # batches of 3 ≠ the training batches: padding must not matter
    b = collate(data, BatchIndices([5, 0, 2]))
    with torch.no_grad():
        assert_close(b.ref_logps["forget"], sequence_logps(live, b.forget).sum(), atol=1e-4, rtol=1e-5)
        assert_close(b.ref_logps["alternate"], sequence_logps(live, b.alternate).sum(), atol=1e-4, rtol=1e-5)


def test_npo_first_step_sits_at_log2(target, splits):
    """Before any update π_θ = π_ref, so the cached reference gives L_NPO = (2/β)·log 2 = 13.8629 at step 1."""
    with pytest.warns(UserWarning, match="changed nothing"):  # one step at warm-up lr 0
        _, log = run(target, splits, "npo", max_steps=1, npo_beta=0.1)
    assert_close(torch.tensor(log[0]["forget"]), torch.tensor(20 * math.log(2)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("recipe,split", [("ga+gd", dict(grad_accum=2)), ("npo+gd", dict(micro_batch=1)),
                                          ("me+kl+sam", dict(micro_batch=2))])
def test_accumulating_micro_batches_equals_one_batch(target, splits, recipe, split):
    """The tiny world's forget10 has 8 items: the effective batch of 8 as 1 × 8, 2 × 4 or 8 × 1 gives the same
    losses, gradient norms and weights (the losses average over the effective batch)."""
    one, log_one = run(target, splits, recipe, max_steps=3, batch_size=8, micro_batch=8, lr=1e-3, warmup_epochs=0)
    assert log_one.summary["micro_batch"] == 8 and log_one.summary["grad_accum"] == 1
    model = target[0]
    tok = target[1]
    from obliviate.models.loading import load_model  # a fresh copy of the same target

    fresh, _ = load_model(model.name_or_path)
    two, log_two = unlearn(fresh, tok, *splits, UnlearnConfig(recipe=recipe, max_steps=3, batch_size=8, lr=1e-3,
                                                        warmup_epochs=0, **split), progress=False)
    assert log_two.summary["micro_batch"] * log_two.summary["grad_accum"] == 8 != log_two.summary["micro_batch"]
    for r1, r2 in zip(log_one, log_two):  # the pre-clip gradient norm is scale-sensitive (Adam's update is not)
        assert_close(r2["grad_norm"], r1["grad_norm"], rtol=1e-4, atol=0)
        assert_close(r2["loss"], r1["loss"], rtol=1e-5, atol=0)
    a, b = weights(one), weights(two)
    assert any(not torch.equal(a[n], weights(load_model(model.name_or_path)[0])[n]) for n in a)
    for n in a:
        assert_close(a[n], b[n], atol=3e-5, rtol=1e-4)  # Adam amplifies float noise of near-zero gradients


@pytest.mark.parametrize("recipe", ["npo+gd+rs", "ga+kl+wa"])
def test_resume_after_a_kill_gives_identical_weights(target, splits, tmp_path, monkeypatch, recipe):
    """Kill right after the step-2 checkpoint of a 5-step run; resuming reaches the uninterrupted run's weights
    (rs: per-step noise; wa: the averaging state; kl: the live reference)."""
    import obliviate.unlearn.loop as loop
    from obliviate.models.loading import load_model

    kw = dict(max_steps=5, batch_size=4, lr=1e-3, seed=2, checkpoint_every=2, wa_start=0.2, wa_every=1)
    whole, log_whole = run(target, splits, recipe, out_dir=tmp_path / "whole", **kw)

    real_save = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        path = real_save(*args, **kwargs)
        raise KeyboardInterrupt  # a kill right after the checkpoint
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    fresh = load_model(target[0].name_or_path)
    with pytest.raises(KeyboardInterrupt):
        run(fresh, splits, recipe, out_dir=tmp_path / "killed", **kw)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    assert (tmp_path / "killed" / "checkpoints" / "step-2" / "state.pt").is_file()
    with pytest.raises(ObliviateError, match="already holds an unlearning run"):
        run(load_model(target[0].name_or_path), splits, recipe, out_dir=tmp_path / "killed", **kw)
    resumed, log_resumed = run(load_model(target[0].name_or_path), splits, recipe, out_dir=tmp_path / "killed",
                               resume=True, **kw)
    a, b = weights(whole), weights(resumed)
    for n in a:
        assert torch.equal(a[n], b[n]), n
    assert [r["loss"] for r in log_whole] == [r["loss"] for r in log_resumed]
    rows = [json.loads(x) for x in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]


def test_resume_refuses_a_changed_config(target, splits, tmp_path):
    run(target, splits, "ga", out_dir=tmp_path / "r", max_steps=2, lr=1e-3)
    with pytest.raises(ObliviateError, match="config key 'lr'"):
        run(target, splits, "ga", out_dir=tmp_path / "r", resume=True, max_steps=2, lr=2e-3)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(target, splits, tmp_path, monkeypatch):
    import obliviate.unlearn.loop as loop
    from obliviate.unlearn.forward import Part

    calls = {"n": 0}

    def exploding(forget_mean_logps):
        calls["n"] += 1
        return forget_mean_logps.mean() * (float("nan") if calls["n"] >= 3 else 1.0)
    monkeypatch.setitem(loop.OBJECTIVES, "ga", Part(exploding, lambda v, c: dict(forget_mean_logps=v.logps("forget").mean())))
    with pytest.raises(ObliviateError) as e:
        run(target, splits, "ga", out_dir=tmp_path / "nan", max_steps=4, checkpoint_every=1, lr=1e-3,
            micro_batch=4)  # no trial step of micro_batch=auto: the calls are the steps
    msg = str(e.value)
    assert "non-finite loss" in msg and "step 3" in msg and "step-2" in msg and "\n" not in msg
    assert (tmp_path / "nan" / "checkpoints" / "step-2").is_dir()
    assert not (tmp_path / "nan" / "checkpoints" / "step-3").exists()


def test_warns_when_unlearning_changed_nothing(target, splits):
    """One step with one epoch of warm-up runs at lr 0: weights and forget loss stay put."""
    with pytest.warns(UserWarning, match="changed nothing measurable"):
        run(target, splits, "ga", max_steps=1)


def test_run_directory_contents(target, splits, tmp_path):
    from obliviate.models.loading import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a working run does not warn
        model, log = run(target, splits, "npo+gd", out_dir=tmp_path / "out", max_steps=4, lr=1e-3, seed=5)
    out = tmp_path / "out"
    info = json.loads((out / "run.json").read_text())
    assert info["seed"] == 5 and info["config"]["recipe"] == "npo+gd" and "torch" in info["versions"]
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert {"forget", "retain", "loss", "grad_norm", "lr", "epoch"} <= set(rows[0])
    assert_close(torch.tensor(rows[1]["loss"]), torch.tensor(rows[1]["forget"] + rows[1]["retain"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["forget_prob_after"] < summary["forget_prob_before"] and summary["steps"] == 4
    assert log.summary == summary
    assert json.loads((out / "obliviate.json").read_text())["size"] == "micro"
    reloaded, _ = load_model(out)
    for n, p in reloaded.named_parameters():
        assert torch.equal(p, dict(model.named_parameters())[n])


def test_lora_kl_reference_is_the_adapter_disabled_policy(target, splits):
    from obliviate.unlearn.loop import _prepare_model
    from obliviate.unlearn.objectives import OBJECTIVES

    (model, tok), (forget, retain) = target, splits
    original = copy.deepcopy(model)
    cfg = UnlearnConfig(recipe="ga+kl", lora=True)
    peft_model, ref = _prepare_model(model, cfg, OBJECTIVES["ga"], {"retain", "ref_model"}, None)
    assert ref.model is peft_model  # no second copy
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    b = collate(build_data(tok, forget, None, set()), BatchIndices([0, 1]))
    with torch.no_grad():
        for p in (p for n, p in peft_model.named_parameters() if "lora_B" in n):
            p.fill_(0.05)  # a non-trivial adapter
        with ref.context():
            assert_close(sequence_logps(peft_model, b.forget).sum(), sequence_logps(original, b.forget).sum())
        assert not torch.allclose(sequence_logps(peft_model, b.forget).sum(), sequence_logps(original, b.forget).sum())


def test_lora_run_returns_a_merged_plain_model(target, splits):
    model, log = run(target, splits, "npo+kl", lora=True, max_steps=3, lr=1e-2)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert log.summary["forget_prob_after"] < log.summary["forget_prob_before"]


def test_gradient_checkpointing_saves_less_and_keeps_the_result(target, splits, unlearn_target_dir):
    from obliviate.models.loading import load_model
    from obliviate.unlearn.loop import _prepare_model
    from obliviate.unlearn.objectives import OBJECTIVES

    def saved_numel(model, batch):  # elements autograd keeps for the backward of one training forward
        n = [0]
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: n.__setitem__(0, n[0] + t.numel()) or t, lambda t: t):
            sequence_logps(model, batch)
        return n[0]

    (model, tok), (forget, retain) = target, splits
    b = collate(build_data(tok, forget, None, set()), BatchIndices([0, 1])).forget
    plain_saved = saved_numel(model, b)
    ckpt_model, _ = _prepare_model(load_model(unlearn_target_dir)[0], UnlearnConfig(recipe="ga", gradient_checkpointing=True),
                                   OBJECTIVES["ga"], set(), None)
    assert saved_numel(ckpt_model, b) < plain_saved / 2

    plain, log_plain = run(target, splits, "npo+gd", max_steps=3, lr=1e-3)
    ckpt, log_ckpt = run(load_model(unlearn_target_dir), splits, "npo+gd", max_steps=3, lr=1e-3,
                         gradient_checkpointing=True)
    for a, c in zip(log_plain, log_ckpt):  # recomputing the activations changes no number
        assert a["loss"] == pytest.approx(c["loss"], rel=1e-5)
    for (n, p), (_, q) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)
    assert not any(getattr(m, "gradient_checkpointing", False) for m in ckpt.modules())  # a plain model again


def test_gradient_checkpointing_needs_a_model_that_supports_it(target, splits):
    (model, tok), (forget, retain) = target, splits
    model.supports_gradient_checkpointing = False
    with pytest.raises(ObliviateError, match="gradient_checkpointing=true: LlamaForCausalLM does not support it"):
        unlearn(model, tok, forget, retain, UnlearnConfig(recipe="ga", gradient_checkpointing=True, max_steps=1),
                progress=False)


def test_reference_original_requires_a_model(target, splits):
    with pytest.raises(ObliviateError, match="reference=original needs ref_model"):
        run(target, splits, "npo", reference="original", max_steps=1)


def test_missing_retain_records_is_an_error(target, splits):
    with pytest.raises(ObliviateError, match="needs retain records"):
        unlearn(*target, splits[0], None, UnlearnConfig(recipe="ga+gd"), progress=False)


@pytest.mark.parametrize("recipe", ["ga+gd", "npo+gd", "me+gd", "idk+gd", "idk+ap", "npo+gd+sam", "simnpo+gd",
                                    "dpo+kl", "rmu", "npo+gd+rs", "npo+gd+gp", "npo+gd+cr", "npo+gd+wa"])
def test_every_recipe_lowers_the_forget_probability(target, splits, recipe):
    extra = {"rmu": dict(rmu_coeff=20.0, rmu_retain_weight=1.0, lr=1e-2)}.get(recipe, {})
    _, log = run(target, splits, recipe, **{"max_steps": 8, "batch_size": 4, **extra})
    s = log.summary
    assert s["forget_prob_after"] < 0.8 * s["forget_prob_before"], s
    assert all(math.isfinite(r["loss"]) for r in log)


def test_bf16_mixed_precision_runs_training_passes_in_bf16_and_returns_an_fp32_model(target, splits,
                                                                                       unlearn_target_dir):
    from obliviate.models.loading import load_model

    other = load_model(unlearn_target_dir)
    seen = {"fp32": set(), "bf16": set()}
    for key, (model, _) in (("fp32", target), ("bf16", other)):
        model.model.layers[0].mlp.down_proj.register_forward_hook(
            lambda mod, i, o, k=key: seen[k].add((mod.training, o.dtype)))
    plain, log_plain = run(target, splits, "npo+gd", max_steps=3, lr=1e-3)
    mixed, log_mixed = run(other, splits, "npo+gd", max_steps=3, lr=1e-3, mixed_precision="bf16")
    assert (True, torch.bfloat16) in seen["bf16"] and (True, torch.bfloat16) not in seen["fp32"]
    assert (False, torch.bfloat16) not in seen["bf16"]  # reference cache and probes ran in fp32
    for a, b in zip(log_plain, log_mixed):  # bf16 rounding moves the loss a little, not the run
        assert b["loss"] == pytest.approx(a["loss"], rel=0.05)
        assert b["loss"] != a["loss"]
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    with torch.no_grad():  # the returned model computes in fp32: autocast is not left on its forward
        seen["bf16"].clear()
        mixed.train()
        mixed(torch.tensor([[1, 2, 3]]))
    assert seen["bf16"] == {(True, torch.float32)}


def test_mixed_precision_is_checked(monkeypatch, target, splits):
    with pytest.raises(ObliviateError, match="mixed_precision 'fp8': choose one of no, bf16"):
        UnlearnConfig(recipe="ga", mixed_precision="fp8")
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    with pytest.raises(ObliviateError, match="mixed_precision=bf16 conflicts with accelerate launch's"):
        run(target, splits, "ga", mixed_precision="bf16", max_steps=1)
