"""Smoothing (seed B, SPEC §1): how the gradient of `α·L_f + λ·L_r` is computed for one micro-batch.

A smoother takes the step closure `Step` — `forget(forward=None)` and `retain()` recompute the two
losses at the current weights (or through `forward`, a functional call at other weights),
`weigh(f, r)` = α·f + λ·r, `backward` accumulates into `.grad` — and runs the backward passes its
method prescribes. Every smoother *adds* `scale ×` its gradient to `.grad` and never reads or
clears it, so gradient accumulation over micro-batches works with all of them; clipping and the
optimiser step happen afterwards in the loop, for every smoother alike. Returns the log values.

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
    forget: Callable[..., torch.Tensor]  # forget(forward=None) -> L_f scalar
    retain: Callable[[], torch.Tensor] | None  # -> L_r scalar; None without a regulariser
    weigh: Callable  # (forget, retain) -> α·forget + λ·retain
    params: list[tuple[str, torch.nn.Parameter]]  # the trainable parameters
    backward: Callable[[torch.Tensor], None]
    model: torch.nn.Module
    cfg: object
    scale: float = 1.0  # 1 / micro-batches per optimiser step
    seed: int = 0  # per micro-batch, for random perturbations


def _retain(s: Step) -> dict:
    """Backward λ·L_r(θ) at the current weights; log value."""
    if s.retain is None:
        return {}
    lr = s.retain()
    s.backward(s.weigh(0.0, lr) * s.scale)
    return {"retain": float(lr.detach())}


def _global_norm(grads) -> torch.Tensor:
    return torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))


def _grads(loss, params, **kw):
    gs = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for g, (_, p) in zip(gs, params)]


@contextlib.contextmanager
def _double_backward_attention():
    """Fused CPU/GPU attention kernels have no double backward; the math kernel does."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def plain(s: Step) -> dict:
    r"""No smoothing: backward of :math:`\alpha L_f(\theta) + \lambda L_r(\theta)`."""
    lf = s.forget()
    lr = s.retain() if s.retain is not None else None
    s.backward(s.weigh(lf, 0.0 if lr is None else lr) * s.scale)
    return {"forget": float(lf.detach()), **({} if lr is None else {"retain": float(lr.detach())})}


def sam(s: Step) -> dict:
    r"""Sharpness-aware minimisation of the forget loss (Foret et al. 2021; seed B).

    .. math:: \epsilon = \rho\,\frac{\nabla L_f(\theta)}{\|\nabla L_f(\theta)\|_2},\qquad
              g = \alpha\,\nabla L_f(\theta + \epsilon) + \lambda\,\nabla L_r(\theta)

    The norm is global over the trainable parameters (ε = 0 when the gradient is 0). The weights
    are restored from a copy (θ + ε − ε is not θ in floating point).
    """
    lf = s.forget()
    g = _grads(lf, s.params)
    norm = _global_norm(g)
    eps = [gi * (s.cfg.sam_rho / norm) if norm > 0 else torch.zeros_like(gi) for gi in g]
    saved = [p.detach().clone() for _, p in s.params]
    with torch.no_grad():
        for (_, p), e in zip(s.params, eps):
            p.add_(e)
    try:
        s.backward(s.weigh(s.forget(), 0.0) * s.scale)
    finally:
        with torch.no_grad():
            for (_, p), w in zip(s.params, saved):
                p.copy_(w)
    return {"forget": float(lf.detach()), "sam_grad_norm": float(norm), **_retain(s)}


def rs(s: Step) -> dict:
    r"""Randomized smoothing of the forget loss (seed B).

    .. math:: g = \frac{\alpha}{m}\sum_{s=1}^m \nabla L_f(\theta + \delta_s) + \lambda\,\nabla L_r(\theta),
              \qquad \delta_s \sim \mathcal N(0, \sigma^2 I)

    Noise comes from a generator seeded per micro-batch, so a resumed run draws the same δ_s.
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
            lf = s.forget()
            s.backward(s.weigh(lf, 0.0) * (s.scale / m))
            total += float(lf.detach())
    finally:
        with torch.no_grad():
            for (_, p), w in zip(s.params, saved):
                p.copy_(w)
    return {"forget": total / m, **_retain(s)}


def gp_penalty(s: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_f(θ), ‖∇L_f(θ)‖₂) with the norm kept differentiable (double backward)."""
    with _double_backward_attention():
        lf = s.forget()
        return lf, _global_norm(_grads(lf, s.params, create_graph=True))


def gp(s: Step) -> dict:
    r"""Gradient-norm penalty on the forget loss (seed B), differentiated (the reference code's `.item()`
    detaches it, so it has no effect there).

    .. math:: L = \alpha\big(L_f(\theta) + \rho_{gp}\,\|\nabla L_f(\theta)\|_2\big) + \lambda L_r(\theta)
    """
    lf, pen = gp_penalty(s)
    with _double_backward_attention():
        s.backward(s.weigh(lf + s.cfg.gp_rho * pen, 0.0) * s.scale)
    return {"forget": float(lf.detach()), "gp_penalty": float(pen.detach()), **_retain(s)}


def cr_penalty(s: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_f(θ), ‖∇L_f(θ + h·z) − ∇L_f(θ)‖₂), z = ∇L_f/‖∇L_f‖ held constant; both differentiable in θ."""
    with _double_backward_attention():
        lf = s.forget()
        g0 = _grads(lf, s.params, create_graph=True)
        norm = _global_norm(g0).detach()
        z = [g.detach() / norm if norm > 0 else torch.zeros_like(g) for g in g0]
        moved = {n: p + s.cfg.cr_h * zi for (n, p), zi in zip(s.params, z)}  # a function of θ
        lf_h = s.forget(forward=lambda **kw: functional_call(s.model, moved, (), kw))
        g1 = torch.autograd.grad(lf_h, list(moved.values()), allow_unused=True, create_graph=True)
        g1 = [torch.zeros_like(a) if b is None else b for a, b in zip(g0, g1)]
        return lf, _global_norm([b - a for a, b in zip(g0, g1)])


def cr(s: Step) -> dict:
    r"""Curvature regularisation of the forget loss (seed B), differentiated (the reference code crashes
    and detaches it).

    .. math:: L = \alpha\big(L_f(\theta) + \rho_{cr}\,\|\nabla L_f(\theta + h z) - \nabla L_f(\theta)\|_2\big)
              + \lambda L_r(\theta), \qquad z = \frac{\nabla L_f(\theta)}{\|\nabla L_f(\theta)\|_2}\ \text{(constant)}
    """
    lf, pen = cr_penalty(s)
    with _double_backward_attention():
        s.backward(s.weigh(lf + s.cfg.cr_rho * pen, 0.0) * s.scale)
    return {"forget": float(lf.detach()), "cr_penalty": float(pen.detach()), **_retain(s)}


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

    @property
    def doc(self) -> str:
        return ((self.tracker or self.grad).__doc__ or "").strip().splitlines()[0]


SMOOTHERS = {
    "sam": Smoother(sam),
    "rs": Smoother(rs),
    "gp": Smoother(gp),
    "cr": Smoother(cr),
    "wa": Smoother(plain, tracker=WeightAverage),
}
NO_SMOOTHING = Smoother(plain)
