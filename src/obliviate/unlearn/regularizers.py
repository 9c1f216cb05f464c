"""Retain regularisers (SPEC §1): pure functions on tensors, each with its equation, plus the registry.

Shapes as in `objectives`. Minimising each loss *keeps* what the model knows on the retain set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from obliviate.unlearn.forward import Part
from obliviate.parity import convention
from obliviate.unlearn.objectives import batch_mean, nll_inputs, nll_token_mean, positions, token_mean


def gd_loss(retain_mean_logps: torch.Tensor, *, batch_size: int | None = None, **token_mean_args) -> torch.Tensor:
    r"""Gradient descent on the retain answers (GradDiff's retain term).

    .. math:: L_{GD} = \frac{1}{B}\sum_i \mathrm{NLL}_{mean}(y_i|x_i)

    `token_mean_args`: the HF token mean instead (`nll_reduction=token-mean`; open-unlearning
    src/trainer/unlearn/grad_diff.py:26-29 at d3d7cf9).
    Args: retain_mean_logps (B,); batch_size B (the effective batch's, `objectives`).
    """
    if token_mean_args:
        return -nll_token_mean(**token_mean_args)
    return -batch_mean(retain_mean_logps, batch_size)


def kl_loss(retain_logits: torch.Tensor, ref_retain_logits: torch.Tensor, position_mask: torch.Tensor, *,
            n_positions: float | None = None) -> torch.Tensor:
    r"""KL to the reference's next-token distributions on retain positions.

    .. math:: L_{KL} = \frac{1}{|M|}\sum_{t\in M} \mathrm{KL}\big(\pi_{ref}(\cdot|ctx_t)\,\|\,\pi_\theta(\cdot|ctx_t)\big)

    M = the answer positions (`kl_positions=answer`, default), or every shifted position, padding included
    (`kl_positions=all`, B·(T−1)): *not* the references' set. open-unlearning and Closer-Look average over all B·T
    unshifted positions, the last included (`kl_div(..., reduction="batchmean")` on (B·T, V) rows, open-unlearning
    src/trainer/utils.py:17-31 at d3d7cf9): `parity=open-unlearning` / `closer-look` pass those (B,T,V) logits.
    Args: retain_logits, ref_retain_logits (B,T,V); position_mask (B,T); n_positions |M|.
    """
    logp = torch.log_softmax(retain_logits.float(), -1)
    ref_logp = torch.log_softmax(ref_retain_logits.float(), -1)
    per_pos = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return token_mean(per_pos, position_mask, n_positions)


def ap_loss(retain_logps: torch.Tensor, retain_alternate_logps: torch.Tensor, *, beta: float = 0.1,
            batch_size: int | None = None) -> torch.Tensor:
    r"""Answer preservation (seed A): prefer the true retain answer over a refusal, no reference model.

    .. math:: \Delta_i = \log\pi_\theta(y_i|x_i) - \log\pi_\theta(y^{idk}_i|x_i), \qquad
              L_{AP} = -\frac{1}{\beta}\frac{1}{B}\sum_i \log\sigma(\beta\,\Delta_i)

    Gradient: σ(−βΔ)·(∇NLL(y) − ∇NLL(y_idk)). Args: retain_logps, retain_alternate_logps (B,) summed; batch_size B.
    """
    return -(1.0 / beta) * batch_mean(F.logsigmoid(beta * (retain_logps - retain_alternate_logps)), batch_size)


def dual_ascent(lam: float, retain_loss: float, *, constraint: float, step: float) -> float:
    r"""One dual-ascent step on the retain weight, treating the retain loss as a constraint L_retain ≤ ε
    (the primal–dual idea of "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language
    Models", Entesari et al. 2025, https://arxiv.org/abs/2506.05314; open-unlearning's PDU).

    .. math:: \lambda \leftarrow \max\big(0,\; \lambda + \eta\,(L_{retain} - \epsilon)\big)

    λ grows while the retain loss exceeds ε and shrinks (never below 0) once it is satisfied.
    Args: lam λ, retain_loss this step's L_retain; constraint ε; step η.
    """
    return max(0.0, lam + step * (retain_loss - constraint))


def _all_unshifted(v, name: str) -> dict:
    """KL inputs on every one of the B·T unshifted positions (convention `kl_positions=all-unshifted`): the policy's
    and the reference's logits at each position, the last included, from one extra forward of each."""
    view = v.view(name)
    args = dict(input_ids=view["input_ids"], attention_mask=view["attention_mask"])
    with torch.no_grad(), v.ref.context():
        ref = v.ref.model(**args).logits
    ones = lambda b: torch.ones_like(b["attention_mask"], dtype=torch.float)  # noqa: E731
    return dict(retain_logits=v.forward(**args).logits, ref_retain_logits=ref, position_mask=ones(view),
                n_positions=v.count(name, ones))


def _kl_inputs(v, c) -> dict:
    if convention("kl_positions", c.parity) == "all-unshifted":
        return _all_unshifted(v, "retain")
    return dict(retain_logits=v.logps("retain", logits=True).logits, ref_retain_logits=v.ref_logps("retain").logits,
                **positions(v, "retain", c.kl_positions))


REGULARIZERS = {
    "gd": Part(gd_loss, lambda v, c: dict(retain_mean_logps=v.logps("retain").mean(), batch_size=v.batch_size,
                                          **nll_inputs(v, "retain", c)), frozenset({"retain"}), logps_of=("retain",)),
    "kl": Part(kl_loss, _kl_inputs, frozenset({"retain", "ref_model"}),
               counts_padding=lambda c: c.kl_positions == "all"
               or convention("kl_positions", c.parity) == "all-unshifted"),
    "ap": Part(ap_loss, lambda v, c: dict(
        retain_logps=v.logps("retain").sum(), retain_alternate_logps=v.logps("retain_alternate").sum(),
        beta=c.ap_beta, batch_size=v.batch_size), frozenset({"retain", "retain_alternate"}),
        logps_of=("retain", "retain_alternate")),
}
