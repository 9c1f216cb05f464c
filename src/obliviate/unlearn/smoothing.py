"""Smoothing (seed B, SPEC §1): how the gradient of `α·L_f + λ·L_r` is computed for one effective batch.

A smoother takes the step closure `Step` — `forget(k, forward=None)` and `retain(k)` recompute micro-batch
k's part of the two losses at the current weights (or through `forward`, a functional call at other
weights; the parts of the `micro_batches` micro-batches sum to the effective batch's losses), `weigh(f, r)`
= α·f + λ·r, `backward` accumulates into `.grad` — and runs the backward passes its method prescribes,
one micro-batch at a time. Every smoother *adds* its gradient to `.grad` and never reads or clears it;
clipping and the optimiser step happen afterwards in the loop, for every smoother alike. Returns the log
values. Whatever depends on the gradient as a whole — SAM's ascent direction, GP's and CR's norms — is
taken from the effective batch's gradient (summed over the micro-batches first), so the result does not
depend on the split.

`wa` does not change the gradient: its `tracker` records weights and loads their average at the end.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call


@dataclass
class Step:
    forget: Callable[..., torch.Tensor]  # forget(k, forward=None) -> micro-batch k's part of L_f
    retain: Callable[[int], torch.Tensor] | None  # retain(k) -> micro-batch k's part of L_r; None: no regulariser
    weigh: Callable  # (forget, retain) -> α·forget + λ·retain
    params: list[tuple[str, torch.nn.Parameter]]  # the trainable parameters
    backward: Callable[[torch.Tensor], None]
    model: torch.nn.Module
    cfg: object
    micro_batches: int = 1
    seed: int = 0  # per optimiser step, for random perturbations
    shared: Callable[[int], tuple] | None = None  # shared(k) -> (L_f part, L_r part or None) of micro-batch k from
    # one forward of every view the parts read (`forward.shared_views`); None: one forward per part


def _retain(s: Step) -> dict:
    """Backward λ·L_r(θ) at the current weights; log value."""
    if s.retain is None:
        return {}
    total = 0.0
    for k in range(s.micro_batches):
        lr = s.retain(k)
        s.backward(s.weigh(0.0, lr))
        total += float(lr.detach())
    return {"retain": total}


def _global_norm(grads) -> torch.Tensor:
    return torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))


def _dot(a, b) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _unit(vectors, norm) -> list[torch.Tensor]:
    """`vectors` / `norm` (their direction), zeros when the norm is 0."""
    return [v / norm if norm > 0 else torch.zeros_like(v) for v in vectors]


def _grads(loss, params, **kw):
    gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for g, (_, p) in zip(gs, params)]


def forget_gradient(s: Step, at: dict[str, torch.Tensor] | None = None) -> tuple[list[torch.Tensor], float]:
    """(∇L_f, L_f) of the effective batch, summed over its micro-batches (not into `.grad`); at the weights `at`
    (a functional call, the gradient taken in them) when given."""
    total, grads = 0.0, None
    for k in range(s.micro_batches):
        if at is None:
            lf = s.forget(k)
            g = _grads(lf, s.params)
        else:
            lf = s.forget(k, forward=lambda **kw: functional_call(s.model, at, (), kw))
            g = [torch.zeros_like(p) if x is None else x
                 for x, p in zip(torch.autograd.grad(lf, list(at.values()), allow_unused=True), at.values())]
        grads = g if grads is None else [a.add_(b) for a, b in zip(grads, g)]
        total += float(lf.detach())
    return grads, total


@contextlib.contextmanager
def _double_backward_attention():
    """Fused CPU/GPU attention kernels have no double backward; the math kernel does."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def plain(s: Step) -> dict:
    r"""No smoothing: backward of :math:`\alpha L_f(\theta) + \lambda L_r(\theta)`; one forward and one backward per
    micro-batch when the parts share their forward (`s.shared`), else the two terms one after the other (the same
    gradient; only one graph — its activations and its embedding gradients — alive at a time)."""
    if s.shared is not None:
        logged: dict[str, float] = {}
        for k in range(s.micro_batches):
            lf, lr = s.shared(k)
            s.backward(s.weigh(lf, 0.0 if lr is None else lr))
            for name, value in (("forget", lf), ("retain", lr)):
                if value is not None:
                    logged[name] = logged.get(name, 0.0) + float(value.detach())
        return logged
    forget = 0.0
    for k in range(s.micro_batches):
        lf = s.forget(k)
        s.backward(s.weigh(lf, 0.0))
        forget += float(lf.detach())
    return {"forget": forget, **_retain(s)}


def sam(s: Step) -> dict:
    r"""Sharpness-aware minimisation of the forget loss (Foret et al. 2021; seed B).

    .. math:: \epsilon = \rho\,\frac{\nabla L_f(\theta)}{\|\nabla L_f(\theta)\|_2},\qquad
              g = \alpha\,\nabla L_f(\theta + \epsilon) + \lambda\,\nabla L_r(\theta)

    The norm is global over the trainable parameters (ε = 0 when the gradient is 0) and ∇L_f is the effective
    batch's. The weights are restored from a copy (θ + ε − ε is not θ in floating point).
    """
    g, lf = forget_gradient(s)
    norm = _global_norm(g)
    eps = [gi * (s.cfg.sam_rho / norm) if norm > 0 else torch.zeros_like(gi) for gi in g]
    saved = [p.detach().clone() for _, p in s.params]
    with torch.no_grad():
        for (_, p), e in zip(s.params, eps):
            p.add_(e)
    try:
        for k in range(s.micro_batches):
            s.backward(s.weigh(s.forget(k), 0.0))
    finally:
        with torch.no_grad():
            for (_, p), w in zip(s.params, saved):
                p.copy_(w)
    return {"forget": lf, "sam_grad_norm": float(norm), **_retain(s)}


def rs(s: Step) -> dict:
    r"""Randomized smoothing of the forget loss (seed B).

    .. math:: g = \frac{\alpha}{m}\sum_{s=1}^m \nabla L_f(\theta + \delta_s) + \lambda\,\nabla L_r(\theta),
              \qquad \delta_s \sim \mathcal N(0, \sigma^2 I)

    Noise comes from a generator seeded per optimiser step (one δ_s for all its micro-batches), so a resumed
    run draws the same δ_s.
    """
    m, sigma = s.cfg.rs_samples, s.cfg.rs_sigma
    gen = torch.Generator().manual_seed(s.seed)
    saved = [p.detach().clone() for _, p in s.params]
    total = 0.0
    try:
        for _ in range(m):
            with torch.no_grad():
                for (_, p), w in zip(s.params, saved):
                    p.copy_(w + sigma * torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device))
            for k in range(s.micro_batches):
                lf = s.forget(k)
                s.backward(s.weigh(lf, 0.0) / m)
                total += float(lf.detach())
    finally:
        with torch.no_grad():
            for (_, p), w in zip(s.params, saved):
                p.copy_(w)
    return {"forget": total / m, **_retain(s)}


def gp_penalty(s: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_f(θ), ‖∇L_f(θ)‖₂) of a one-micro-batch step, the norm kept differentiable (double backward)."""
    with _double_backward_attention():
        lf = s.forget(0)
        return lf, _global_norm(_grads(lf, s.params, create_graph=True))


def _whole_batch_penalty(s: Step, penalty, rho: float, name: str) -> dict:
    """One-micro-batch GP / CR step: backward of α(L_f + ρ·penalty) + λL_r, with `penalty(s)` = (L_f, penalty)."""
    lf, pen = penalty(s)
    with _double_backward_attention():
        s.backward(s.weigh(lf + rho * pen, 0.0))
    return {"forget": float(lf.detach()), name: float(pen.detach()), **_retain(s)}


def _forget_and_gradient(s: Step, k: int):
    """(L_f^k, ∇L_f^k) of micro-batch k, the gradient differentiable."""
    lf = s.forget(k)
    return lf, _grads(lf, s.params, create_graph=True)


def _penalty_over_micro_batches(s: Step, rho: float, v: list[torch.Tensor], per_batch, lf: float, name: str) -> dict:
    """Backward of α(L_f + ρ‖v‖) + λL_r over micro-batches, v = Σ_k v_k: ∇‖v‖ = Σ_k ∇⟨v_k, u⟩ with u = v/‖v‖
    held fixed; `per_batch(s, k)` = (L_f^k, v_k), both differentiable in θ."""
    pen = _global_norm(v)
    u = _unit(v, pen)
    for k in range(s.micro_batches):
        with _double_backward_attention():
            lf_k, v_k = per_batch(s, k)
            s.backward(s.weigh(lf_k + rho * _dot(v_k, u), 0.0))
    return {"forget": lf, name: float(pen), **_retain(s)}


def gp(s: Step) -> dict:
    r"""Gradient-norm penalty on the forget loss (seed B), differentiated (the reference code's `.item()`
    detaches it, so it has no effect there).

    .. math:: L = \alpha\big(L_f(\theta) + \rho_{gp}\,\|\nabla L_f(\theta)\|_2\big) + \lambda L_r(\theta)

    Over micro-batches: g = Σ_k ∇L_f^k first, then ∇‖g‖ = H·g/‖g‖ = Σ_k ∇⟨∇L_f^k, u⟩ with u = g/‖g‖ held fixed.
    """
    rho = s.cfg.gp_rho
    if s.micro_batches == 1:
        return _whole_batch_penalty(s, gp_penalty, rho, "gp_penalty")
    g, lf = forget_gradient(s)
    return _penalty_over_micro_batches(s, rho, g, _forget_and_gradient, lf, "gp_penalty")


def _cr_difference(s: Step, k: int, z: list[torch.Tensor] | None = None):
    """(L_f^k(θ), ∇L_f^k(θ + h·z) − ∇L_f^k(θ)) of micro-batch k, differentiable in θ; z held constant (default:
    this micro-batch's own ∇L_f/‖∇L_f‖, right for a one-micro-batch step)."""
    lf = s.forget(k)
    g0 = _grads(lf, s.params, create_graph=True)
    if z is None:
        norm = _global_norm(g0).detach()
        z = _unit([g.detach() for g in g0], norm)
    moved = {n: p + s.cfg.cr_h * zi for (n, p), zi in zip(s.params, z)}  # a function of θ
    lf_h = s.forget(k, forward=lambda **kw: functional_call(s.model, moved, (), kw))
    g1 = torch.autograd.grad(lf_h, list(moved.values()), allow_unused=True, create_graph=True)
    return lf, [(torch.zeros_like(a) if b is None else b) - a for a, b in zip(g0, g1)]


def cr_penalty(s: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_f(θ), ‖∇L_f(θ + h·z) − ∇L_f(θ)‖₂) of a one-micro-batch step, z = ∇L_f/‖∇L_f‖ held constant; both
    differentiable in θ."""
    with _double_backward_attention():
        lf, d = _cr_difference(s, 0)
        return lf, _global_norm(d)


def cr(s: Step) -> dict:
    r"""Curvature regularisation of the forget loss (seed B), differentiated (the reference code crashes
    and detaches it).

    .. math:: L = \alpha\big(L_f(\theta) + \rho_{cr}\,\|\nabla L_f(\theta + h z) - \nabla L_f(\theta)\|_2\big)
              + \lambda L_r(\theta), \qquad z = \frac{\nabla L_f(\theta)}{\|\nabla L_f(\theta)\|_2}\ \text{(constant)}

    Over micro-batches: z from the summed ∇L_f, then d = Σ_k ∇L_f^k(θ + hz) − ∇L_f, then
    ∇‖d‖ = Σ_k ∇⟨d_k, u⟩ with u = d/‖d‖ held fixed.
    """
    rho = s.cfg.cr_rho
    if s.micro_batches == 1:
        return _whole_batch_penalty(s, cr_penalty, rho, "cr_penalty")
    g0, lf = forget_gradient(s)
    norm = _global_norm(g0)
    z = _unit(g0, norm)
    g1, _ = forget_gradient(s, at={n: (p.detach() + s.cfg.cr_h * zi).requires_grad_()
                                   for (n, p), zi in zip(s.params, z)})
    d = [b - a for a, b in zip(g0, g1)]
    return _penalty_over_micro_batches(s, rho, d, lambda s, k: _cr_difference(s, k, z), lf, "cr_penalty")


class WeightAverage:
    r"""Uniform average of the trainable weights at steps start, start+k, …, and the last step (seed B).

    .. math:: \bar\theta = \frac{1}{|S|}\sum_{t\in S}\theta_t,\quad S = \{t_0, t_0+k, \dots\}\cup\{T\},
              \ t_0 = \lceil \text{wa\_start}\cdot T\rceil
    """

    def __init__(self, params, cfg, total_steps: int):
        self.params, self.total = params, total_steps
        self.start = min(total_steps, max(1, math.ceil(cfg.wa_start * total_steps - 1e-9)))
        self.every = cfg.wa_every
        self.sum = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params}
        self.count = 0

    def steps(self) -> list[int]:
        return sorted(set(range(self.start, self.total + 1, self.every)) | {self.total})

    def after_step(self, step: int) -> None:
        if step >= self.start and ((step - self.start) % self.every == 0 or step == self.total):
            with torch.no_grad():
                for n, p in self.params:
                    self.sum[n] += p.detach().double()
            self.count += 1

    def finish(self) -> None:
        with torch.no_grad():
            for n, p in self.params:
                p.copy_((self.sum[n] / max(1, self.count)).to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"sum.{n}": t for n, t in self.sum.items()}, "count": torch.tensor(self.count)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.count = int(state["count"])
        for n in self.sum:
            self.sum[n].copy_(state[f"sum.{n}"])


@dataclass(frozen=True)
class Smoother:
    grad: Callable[[Step], dict]
    tracker: type | None = None  # constructed as tracker(params, cfg, total_steps); after_step, finish
    copies: int = 0  # weight-sized buffers it keeps (saved weights, summed gradients): for the memory estimate

    @property
    def doc(self) -> str:
        return ((self.tracker or self.grad).__doc__ or "").strip().splitlines()[0]


SMOOTHERS = {
    "sam": Smoother(sam, copies=2),
    "rs": Smoother(rs, copies=2),
    "gp": Smoother(gp, copies=2),
    "cr": Smoother(cr, copies=3),
    "wa": Smoother(plain, tracker=WeightAverage, copies=2),
}
NO_SMOOTHING = Smoother(plain)
