"""Smoothers against their definitions on the micro model: SAM, RS, GP, CR gradients and WA's average."""

import copy

import pytest
import torch
from torch.testing import assert_close

from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import BatchIndices, build_data, collate
from obliviate.unlearn.forward import Views
from obliviate.unlearn.objectives import OBJECTIVES
from obliviate.unlearn.regularizers import REGULARIZERS
from obliviate.unlearn.smoothing import Step, cr, gp, plain, rs, sam


@pytest.fixture
def setup(random_micro, splits):
    model, tok = random_micro
    model = copy.deepcopy(model).train()
    forget, retain = splits
    data = build_data(tok, forget, retain, {"retain"})
    batch = collate(data, BatchIndices([0, 1, 2, 3], [5, 6, 7, 8]))
    return model, batch


def make_step(model, batch, cfg, *, with_retain=True):
    obj = OBJECTIVES[cfg.objective]
    reg = REGULARIZERS[cfg.regularizer or "gd"]
    return Step(forget=lambda k, forward=None: obj(Views(model, batch, forward=forward), cfg),
                retain=(lambda k: reg(Views(model, batch), cfg)) if with_retain else None,
                weigh=lambda f, r: cfg.alpha * f + cfg.lam * r,
                params=[(n, p) for n, p in model.named_parameters() if p.requires_grad],
                backward=lambda loss: loss.backward(), model=model, cfg=cfg, micro_batches=1, seed=11)


def grads_of(model):
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out


def loss_grads(model, batch, cfg, part="forget", at=None):
    """∇ of the forget objective (or retain regulariser) at weights θ + `at` (a dict of offsets), on a copy."""
    m = copy.deepcopy(model)
    if at:
        with torch.no_grad():
            for n, p in m.named_parameters():
                p.add_(at[n])
    fn = OBJECTIVES[cfg.objective] if part == "forget" else REGULARIZERS[cfg.regularizer]
    fn(Views(m, batch), cfg).backward()
    return grads_of(m)


def gnorm(g):
    return torch.sqrt(sum((v ** 2).sum() for v in g.values()))


def test_sam_applies_forget_gradient_at_ascent_point_plus_retain_gradient(setup):
    """g = ∇L_f(θ), ε = ρ·g/‖g‖ (global norm); applied = α·∇L_f(θ+ε) + λ·∇L_r(θ); θ restored bit for bit."""
    model, batch = setup
    cfg = UnlearnConfig(recipe="ga+gd+sam", sam_rho=0.5, alpha=1.0, lam=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sam(make_step(model, batch, cfg))
    got = grads_of(model)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    g = loss_grads(model, batch, cfg)
    eps = {n: 0.5 * v / gnorm(g) for n, v in g.items()}
    gf = loss_grads(model, batch, cfg, at=eps)
    gr = loss_grads(model, batch, cfg, part="retain")
    for n in got:
        assert_close(got[n], gf[n] + 0.5 * gr[n], atol=1e-6, rtol=1e-4)
    assert gnorm({n: got[n] - (g[n] + 0.5 * gr[n]) for n in got}) > 1e-4  # differs from the plain gradient


def test_rs_averages_m_perturbed_forget_gradients(setup):
    """applied = (α/m)·Σ_s ∇L_f(θ + δ_s) + λ·∇L_r(θ), δ_s ~ N(0, σ²I) from the step's seeded generator."""
    model, batch = setup
    cfg = UnlearnConfig(recipe="ga+gd+rs", rs_sigma=0.05, rs_samples=3, lam=1.0)
    rs(make_step(model, batch, cfg))
    got = grads_of(model)
    gen = torch.Generator().manual_seed(11)
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for _ in range(3):
        delta = {n: 0.05 * torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
        for n, v in loss_grads(model, batch, cfg, at=delta).items():
            expected[n] += v / 3
    for n, v in loss_grads(model, batch, cfg, part="retain").items():
        expected[n] += v
    for n in got:
        assert_close(got[n], expected[n], atol=1e-6, rtol=1e-4)


def _direction(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    d = {n: torch.randn(p.shape, generator=gen) for n, p in model.named_parameters()}
    norm = gnorm(d)
    return {n: v / norm for n, v in d.items()}


def _penalty_gradient(smoother, model, batch, cfg):
    """(smoother gradient − plain gradient)/ρ with α = 1 and no retain term = ∇penalty."""
    smoother(make_step(model, batch, cfg, with_retain=False))
    with_pen = grads_of(model)
    plain(make_step(model, batch, cfg, with_retain=False))
    base = grads_of(model)
    return {n: with_pen[n] - base[n] for n in base}


def test_gp_penalty_has_the_finite_difference_gradient(setup):
    """P(θ) = ‖∇L_f(θ)‖₂. Central difference along a unit direction d: (P(θ+hd) − P(θ−hd))/2h ≈ ⟨∇P, d⟩, and ∇P ≠ 0
    (the reference code's `.item()` would make it exactly 0)."""
    model, batch = setup
    cfg = UnlearnConfig(recipe="ga+gp", gp_rho=1.0)
    grad_p = _penalty_gradient(gp, model, batch, cfg)
    assert gnorm(grad_p) > 1e-3
    d, h = _direction(model), 1e-2
    pen = lambda sign: gnorm(loss_grads(model, batch, cfg, at={n: sign * h * v for n, v in d.items()}))  # noqa: E731
    fd = (pen(1) - pen(-1)) / (2 * h)
    analytic = sum((grad_p[n] * d[n]).sum() for n in d)
    assert_close(analytic, fd, rtol=0.05, atol=1e-4)


def test_cr_penalty_has_the_finite_difference_gradient(setup):
    """P_z(θ) = ‖∇L_f(θ + h_cr·z) − ∇L_f(θ)‖₂ with z = ∇L_f(θ₀)/‖∇L_f(θ₀)‖ fixed (the method treats z as constant).
    Its autograd gradient (double backward through both gradients) matches the central difference and is ≠ 0."""
    model, batch = setup
    cfg = UnlearnConfig(recipe="ga+cr", cr_rho=1.0, cr_h=0.05)
    grad_p = _penalty_gradient(cr, model, batch, cfg)
    assert gnorm(grad_p) > 1e-3
    g0 = loss_grads(model, batch, cfg)
    z = {n: 0.05 * v / gnorm(g0) for n, v in g0.items()}

    def pen(offset):
        ga = loss_grads(model, batch, cfg, at={n: offset[n] + z[n] for n in z})
        gb = loss_grads(model, batch, cfg, at=offset)
        return gnorm({n: ga[n] - gb[n] for n in ga})

    d, h = _direction(model, 1), 1e-2
    fd = (pen({n: h * v for n, v in d.items()}) - pen({n: -h * v for n, v in d.items()})) / (2 * h)
    analytic = sum((grad_p[n] * d[n]).sum() for n in d)
    assert_close(analytic, fd, rtol=0.05, atol=1e-4)


def test_wa_final_weights_are_the_mean_of_the_snapshots(target, splits, tmp_path):
    """6 steps, wa_start = 0.5, every 2 → snapshots after steps 3, 5 and the last (6). WA leaves the gradient alone,
    so the snapshots are the weights of a plain run, read from its per-step checkpoints."""
    from safetensors.torch import load_file

    (model, tok), (forget, retain) = target, splits
    ref = copy.deepcopy(model)
    kw = dict(max_steps=6, batch_size=4, lr=1e-3, seed=1)
    plain_model, _ = unlearn(model, tok, forget, retain,
                             UnlearnConfig(recipe="ga+gd", checkpoint_every=1, keep_checkpoints=100, **kw),
                             out_dir=tmp_path / "plain", progress=False)
    wa_model, _ = unlearn(ref, tok, forget, retain, UnlearnConfig(recipe="ga+gd+wa", wa_start=0.5, wa_every=2, **kw),
                          progress=False)
    snaps = [load_file(tmp_path / "plain" / "checkpoints" / f"step-{s}" / "model.safetensors") for s in (3, 5)]
    final = dict(plain_model.named_parameters())
    for n, p in wa_model.named_parameters():
        expected = (snaps[0][n].double() + snaps[1][n].double() + final[n].detach().double()) / 3
        assert_close(p.detach().double(), expected, atol=1e-6, rtol=0)
    assert any(not torch.equal(p, final[n]) for n, p in wa_model.named_parameters())
