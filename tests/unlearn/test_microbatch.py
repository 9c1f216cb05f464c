"""Effective batch vs micro-batch: the same gradient whatever the split, for every objective, regulariser and
smoother of the registries; the split's choice (auto / explicit / impossible) and what run.json records."""

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from obliviate import ObliviateError
from obliviate.models.microbatch import candidates, fit_micro_batch, resolve_micro_batch
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import BatchIndices, build_data, cache_ref_logps, collate, micro_batches
from obliviate.unlearn.forward import Ref
from obliviate.unlearn.loop import _Run, recipe_needs
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import SMOOTHERS

B = 32  # the papers' effective batch
SPLITS = (B, 8, 1)  # micro-batch sizes: 1 × 32, 4 × 8, 32 × 1
OPTIONS = dict(sam_rho=0.5, rs_sigma=0.05, gp_rho=1.0, cr_rho=1.0, cr_h=0.05, rmu_coeff=20.0, rmu_retain_weight=1.0)
RECIPES = ([pytest.param(o, {}, id=o) for o in OBJECTIVES if o != "rmu"]
           + [pytest.param("rmu", {}, id="rmu")]
           + [pytest.param(f"ga+{r}", {}, id=f"ga+{r}") for r in REGULARIZERS]
           + [pytest.param(f"npo+gd+{s}", {}, id=f"npo+gd+{s}") for s in SMOOTHERS]
           + [pytest.param("me", dict(me_positions="qa+padding"), id="me-qa+padding"),
              pytest.param("me", dict(me_positions="qa"), id="me-qa"),
              pytest.param("ga+kl", dict(kl_positions="all"), id="ga+kl-all"),
              pytest.param("ceu", dict(ceu_ignore_first_n=3), id="ceu-first3")])


@pytest.fixture(scope="module")
def float64_micro(random_micro):
    """The untrained micro model in float64: the comparison then sees the reduction, not float32 summation order."""
    return copy.deepcopy(random_micro[0]).double().train(), random_micro[1]


def _gradient(model, data, batch, cfg, micro_batch):
    """The effective batch's gradient (and log values) through the loop's own step closure, `micro_batch` rows at
    a time."""
    needs = recipe_needs(cfg)
    for p in model.parameters():
        p.requires_grad_(True)
    if OBJECTIVES[cfg.objective].params is not None:
        keep = {id(p) for p in OBJECTIVES[cfg.objective].params(model, cfg)}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    ref = None
    if "ref_model" in needs:
        frozen = copy.deepcopy(model).eval().requires_grad_(False)
        ref = Ref(frozen)
    acc = SimpleNamespace(num_processes=1, backward=lambda loss: loss.backward())
    smoother = SMOOTHERS[cfg.smoothing] if cfg.smoothing else SMOOTHERS["wa"]
    r = _Run(cfg=cfg, model=model, ref=ref, data=data, acc=acc, objective=OBJECTIVES[cfg.objective],
             regularizer=REGULARIZERS[cfg.regularizer] if cfg.regularizer else None, smoother=smoother, batches=[],
             per_epoch=1, total=1, params=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
             micro_batch=micro_batch, lam=cfg.lam)
    model.zero_grad(set_to_none=True)
    values = smoother.grad(r.step_closure(batch, micro_batches(batch, micro_batch, keep_width=r.keep_width), seed=7))
    grads = torch.cat([p.grad.flatten() for _, p in r.params if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return grads, values


@pytest.mark.parametrize("recipe,extra", RECIPES)
def test_every_part_gives_the_same_gradient_for_every_split(float64_micro, splits, recipe, extra):
    """1 × 32, 4 × 8 and 32 × 1: the gradient of α·L_f + λ·L_r (through the smoother) agrees to 1e-6 relative,
    and so do the logged loss values. Rows have different lengths (padding inside micro-batches) and items
    repeat in new pairings, as in an epoch that wraps."""
    model, tok = float64_micro
    model = copy.deepcopy(model)
    cfg = UnlearnConfig(recipe=recipe, lam=0.7, **{**OPTIONS, **extra})
    forget, retain = splits
    data = build_data(tok, forget, retain, recipe_needs(cfg) | {"retain"}, refusals=["I don't know.", "No idea at all."])
    if "ref_logps" in recipe_needs(cfg):
        cache_ref_logps(model, data)
        for view, v in data.ref_logps.items():  # move off θ = θ_ref so log σ is not at its symmetric point
            data.ref_logps[view] = v.double() + torch.linspace(-3, 3, len(v), dtype=torch.float64)
    rows = BatchIndices([(5 * i) % len(forget) for i in range(B)], [(7 * i + 3) % len(retain) for i in range(B)])
    batch = collate(data, rows)
    (whole, whole_values), *others = [_gradient(model, data, batch, cfg, m) for m in SPLITS]
    assert whole.norm() > 0
    for m, (g, values) in zip(SPLITS[1:], others):
        rel = float((g - whole).norm() / whole.norm())
        assert rel < 1e-6, (recipe, m, rel)
        for key, v in whole_values.items():
            assert values[key] == pytest.approx(v, rel=1e-6, abs=1e-9), (key, m)


SHARED = ("ga+gd", "npo+gd", "simnpo+gd", "wga+gd", "satimp+gd", "idk+gd", "dpo", "ga+ap", "dpo+ap")


@pytest.mark.parametrize("recipe", SHARED)
def test_parts_reading_only_log_probs_share_one_forward(float64_micro, splits, recipe, monkeypatch):
    """When both parts read only the policy's log-probs, a micro-batch is one forward (every view's rows stacked)
    and one backward, with the gradient and the logged losses of one forward per view (1e-9 relative, float64)."""
    import obliviate.unlearn.setup as setup

    model, tok = float64_micro
    model = copy.deepcopy(model)
    cfg = UnlearnConfig(recipe=recipe, lam=0.7)
    data = build_data(tok, *splits, recipe_needs(cfg), refusals=["I don't know.", "No idea at all."])
    if "ref_logps" in recipe_needs(cfg):
        cache_ref_logps(model, data)
        for view, v in data.ref_logps.items():
            data.ref_logps[view] = v.double() + torch.linspace(-3, 3, len(v), dtype=torch.float64)
    batch = collate(data, BatchIndices([0, 3, 1, 4, 2, 5, 6, 7], [2, 5, 1, 7, 3, 0, 6, 4]))
    views = setup.shared_views(OBJECTIVES[cfg.objective], REGULARIZERS[cfg.regularizer] if cfg.regularizer else None)
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    shared, shared_values = _gradient(model, data, batch, cfg, 4)
    assert len(calls) == 2  # two micro-batches, one forward each
    monkeypatch.setattr(setup, "shared_views", lambda *parts: None)
    calls.clear()
    apart, apart_values = _gradient(model, data, batch, cfg, 4)
    assert len(calls) == 2 * len(views)  # one forward per view and micro-batch
    assert float((shared - apart).norm() / apart.norm()) < 1e-9
    assert shared_values.keys() == apart_values.keys()
    for key, v in apart_values.items():
        assert shared_values[key] == pytest.approx(v, rel=1e-9), key


def test_shared_views_only_when_every_part_reads_log_probs_alone():
    from obliviate.unlearn.forward import shared_views

    assert shared_views(OBJECTIVES["npo"], REGULARIZERS["gd"]) == ("forget", "retain")
    assert shared_views(OBJECTIVES["dpo"], None) == ("alternate", "forget")
    assert shared_views(OBJECTIVES["idk"], REGULARIZERS["ap"]) == ("alternate", "retain", "retain_alternate")
    assert shared_views(OBJECTIVES["ga"], None) is None  # one view: nothing to share
    assert shared_views(OBJECTIVES["me"], REGULARIZERS["gd"]) is None  # ME reads logits
    assert shared_views(OBJECTIVES["npo"], REGULARIZERS["kl"]) is None  # KL reads logits and a live reference


def test_a_mean_of_micro_batch_means_would_differ(float64_micro, splits):
    """The test above can fail: gd's per-micro-batch means (each micro-batch its own denominator) do not give
    the effective batch's gradient when micro-batches have different sizes."""
    model, tok = float64_micro
    cfg = UnlearnConfig(recipe="wga")
    data = build_data(tok, *splits, set())
    batch = collate(data, BatchIndices([0, 1, 2, 3, 4]))
    whole, _ = _gradient(copy.deepcopy(model), data, batch, cfg, 5)
    m = copy.deepcopy(model)
    from obliviate.unlearn.forward import Views
    for part in (batch.rows([0, 1, 2, 3]), batch.rows([4])):  # own token counts: a mean of means
        (OBJECTIVES["wga"](Views(m, part), cfg) / 2).backward()
    mean_of_means = torch.cat([p.grad.flatten() for p in m.parameters()])
    assert float((mean_of_means - whole).norm() / whole.norm()) > 1e-3


def test_candidates_halve_through_divisors():
    assert candidates(32) == [32, 16, 8, 4, 2, 1]
    assert candidates(24) == [24, 12, 6, 3, 1]
    assert candidates(20) == [20, 10, 5, 2, 1]
    assert candidates(1) == [1]


@pytest.mark.parametrize("micro,accum,expected", [("auto", None, None), (8, None, 8), ("auto", 4, 8), (8, 4, 8),
                                                  (32, 1, 32)])
def test_explicit_splits_are_used_as_given(micro, accum, expected):
    assert resolve_micro_batch(32, micro, accum) == expected


@pytest.mark.parametrize("micro,accum,message", [
    (5, None, "micro_batch=5 does not divide batch_size=32"),
    ("auto", 3, "grad_accum=3 does not divide batch_size=32"),
    (8, 2, r"micro_batch=8 × grad_accum=2 ≠ batch_size=32"),
    (64, None, "micro_batch=64 does not divide batch_size=32")])
def test_impossible_splits_are_one_line_errors(micro, accum, message):
    with pytest.raises(ObliviateError, match=message) as e:
        resolve_micro_batch(32, micro, accum)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("value,message", [("0", "micro_batch must be auto or an integer >= 1, got 0"),
                                           ("big", "micro_batch must be auto or an integer >= 1, got 'big'")])
def test_bad_micro_batch_values(value, message):
    with pytest.raises(ObliviateError, match=message):
        UnlearnConfig(micro_batch=value)
    assert UnlearnConfig(micro_batch="4").micro_batch == 4


def test_cuda_halves_on_out_of_memory_through_accelerate(random_micro):
    """The device check is all that differs on a GPU: trial(m) raising CUDA's out-of-memory error for m > 8 leaves 8."""
    tried = []

    def trial(m):
        tried.append(m)
        if m > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    got = fit_micro_batch(32, trial, model=random_micro[0], device=torch.device("cuda"), budget=0)
    assert got == 8 and tried == [32, 16, 8]


def test_cpu_estimate_takes_the_largest_micro_batch_within_the_budget(random_micro):
    """One trial at m = 1 measures the bytes saved for backward per item; peak(m) = static + 2·m·per_item."""
    model = random_micro[0]
    x = torch.randn(4, 1000, requires_grad=True)
    calls = []

    def trial(m):
        calls.append(m)
        (x * 2).exp().sum().backward()  # saves one 4×1000 float32 tensor: 16 000 bytes

    cpu = torch.device("cpu")
    assert fit_micro_batch(32, trial, model=model, device=cpu, budget=10 ** 9, static=0) == 32 and calls == [1]
    assert fit_micro_batch(32, trial, model=model, device=cpu, budget=1000 + 2 * 16_000 * 4, static=1000) == 4
    assert fit_micro_batch(32, trial, model=model, device=cpu, budget=10, static=1000) == 1


def test_auto_fits_the_budget_and_run_json_records_the_split(target, splits, tmp_path):
    """A budget below what the process already holds leaves micro-batch 1; explicit values are used as given;
    run.json and summary.json record both numbers."""
    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(recipe="npo+gd", max_steps=1, batch_size=8, lr=1e-3, warmup_epochs=0, max_memory=0.01)
    _, log = unlearn(copy.deepcopy(model), tok, forget, retain, cfg, out_dir=tmp_path / "a", progress=False)
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert (info["micro_batch"], info["grad_accum"]) == (1, 8) == (log.summary["micro_batch"], log.summary["grad_accum"])
    assert info["config"]["micro_batch"] == "auto"
    cfg = UnlearnConfig(recipe="npo+gd", max_steps=1, batch_size=8, lr=1e-3, warmup_epochs=0, grad_accum=4)
    _, log = unlearn(copy.deepcopy(model), tok, forget, retain, cfg, progress=False)
    assert (log.summary["micro_batch"], log.summary["grad_accum"]) == (2, 4)
    cfg = UnlearnConfig(recipe="npo+gd", max_steps=1, batch_size=8, lr=1e-3, warmup_epochs=0)  # default budget
    _, log = unlearn(copy.deepcopy(model), tok, forget, retain, cfg, progress=False)
    assert (log.summary["micro_batch"], log.summary["grad_accum"]) == (8, 1)  # the micro model fits whole


def test_a_whole_batch_loss_refuses_micro_batches(target, splits):
    """npo_granularity=token_mean takes one log σ of the batch's token mean: not a sum over micro-batches."""
    (model, tok), (forget, retain) = target, splits
    cfg = UnlearnConfig(recipe="npo", npo_granularity="token_mean", max_steps=1, batch_size=8, micro_batch=4)
    with pytest.raises(ObliviateError, match="npo_granularity=token_mean takes one loss of the whole batch"):
        unlearn(model, tok, forget, retain, cfg, progress=False)
    cfg = UnlearnConfig(recipe="npo", npo_granularity="token_mean", max_steps=1, batch_size=8, max_memory=0.01)
    _, log = unlearn(model, tok, forget, retain, cfg, progress=False)
    assert log.summary["micro_batch"] == 8  # auto keeps the batch whole


def test_evaluation_batches_halve_on_out_of_memory():
    """Scoring and generation run their batches through `in_batches`: a chunk over 3 items runs out of memory, is
    retried at half the size, and the smaller size is kept; every item is processed once, in order."""
    from obliviate.models.microbatch import in_batches

    seen = []

    def fn(chunk):
        if len(chunk) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        seen.append(list(chunk))

    in_batches(fn, list(range(20)), 16)
    assert seen == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15], [16, 17], [18, 19]]
    with pytest.raises(ValueError):  # other errors are not memory: raised as they are
        in_batches(lambda c: (_ for _ in ()).throw(ValueError("bad")), [1, 2], 2)
