"""Forget objectives (SPEC §1): pure functions on tensors, each with its equation, plus the registry.

Shapes: B sequences, T positions, V vocabulary, H hidden size. `*_logps` are log π(y|x) summed
over answer tokens (B,); `*_mean_logps` are the per-token means (B,) = −NLL_mean. Minimising
each loss *removes* the forget answers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from obliviate.unlearn.forward import Part, decoder_layers


def ga_loss(forget_mean_logps: torch.Tensor) -> torch.Tensor:
    r"""Gradient ascent on the forget answers' NLL.

    .. math:: L_{GA} = -\frac{1}{B}\sum_i \mathrm{NLL}_{mean}(y_i|x_i) = \frac{1}{B}\sum_i \frac{1}{|y_i|}\log\pi_\theta(y_i|x_i)

    Args: forget_mean_logps (B,).
    """
    return forget_mean_logps.mean()


def npo_loss(forget_logps: torch.Tensor, ref_forget_logps: torch.Tensor, *, beta: float = 0.1,
             forget_lengths: torch.Tensor | None = None, granularity: str = "sequence") -> torch.Tensor:
    r"""Negative Preference Optimization (Zhang et al. 2024, arXiv:2404.05868).

    .. math:: L_{NPO} = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\big(\beta\,[\mathrm{NLL}_\theta(y_i|x_i) - \mathrm{NLL}_{ref}(y_i|x_i)]\big)
              = \frac{2}{\beta}\frac{1}{B}\sum_i \log\Big(1 + \big(\tfrac{\pi_\theta(y_i|x_i)}{\pi_{ref}(y_i|x_i)}\big)^\beta\Big)

    `granularity="sequence"`: NLL summed per sequence (the paper). `"token_mean"`: one NLL per batch,
    averaged over all its answer tokens (the WMDP code of the SAM paper), then a single log σ.

    Args: forget_logps (B,), ref_forget_logps (B,) summed log-probs; forget_lengths (B,) answer tokens
    (token_mean only).
    """
    if granularity == "token_mean":
        n = forget_lengths.sum().clamp(min=1)
        return -(2.0 / beta) * F.logsigmoid(beta * (ref_forget_logps.sum() - forget_logps.sum()) / n)
    return -(2.0 / beta) * F.logsigmoid(beta * (ref_forget_logps - forget_logps)).mean()


def simnpo_loss(forget_mean_logps: torch.Tensor, *, beta: float = 2.5, gamma: float = 0.0) -> torch.Tensor:
    r"""SimNPO, reference-free and length-normalised (Fan et al. 2024, arXiv:2410.07163).

    .. math:: L_{SimNPO} = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\Big(-\frac{\beta}{|y_i|}\log\pi_\theta(y_i|x_i) - \gamma\Big)

    Args: forget_mean_logps (B,) = (1/|y|) log π_θ(y|x); beta, gamma (margin γ_s).
    """
    return -(2.0 / beta) * F.logsigmoid(-beta * forget_mean_logps - gamma).mean()


def me_loss(forget_logits: torch.Tensor, position_mask: torch.Tensor, *, form: str = "code") -> torch.Tensor:
    r"""Maximise entropy on forget positions (seed A): push each next-token distribution P_t to uniform U.

    .. math:: \text{paper: } \mathrm{KL}(P_t\,\|\,U) = \log V - H(P_t) \qquad
              \text{code: } \mathrm{KL}(U\,\|\,P_t) = -\log V - \frac{1}{V}\sum_v \log P_t(v)

    averaged over the positions where `position_mask` is 1. The code form (default) has gradient
    `p − 1/V` in the logits; the paper form's `p(log p + H)` vanishes near one-hot distributions.

    Args: forget_logits (B,T,V); position_mask (B,T).
    """
    logp = torch.log_softmax(forget_logits.float(), dim=-1)
    log_v = math.log(logp.shape[-1])
    if form == "paper":
        per_pos = (logp.exp() * logp).sum(-1) + log_v
    else:
        per_pos = -logp.mean(-1) - log_v
    mask = position_mask.float()
    return (per_pos * mask).sum() / mask.sum().clamp(min=1)


def idk_loss(alternate_mean_logps: torch.Tensor) -> torch.Tensor:
    r"""Fine-tune on a refusal ("I don't know") for each forget question.

    .. math:: L_{IdK} = \frac{1}{B}\sum_i \mathrm{NLL}_{mean}(y^{idk}_i|x_i)

    Args: alternate_mean_logps (B,) mean log-probs of the refusals.
    """
    return -alternate_mean_logps.mean()


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, *, beta: float = 0.1) -> torch.Tensor:
    r"""IdkDPO: DPO (Rafailov et al. 2023, arXiv:2305.18290) with chosen = refusal, rejected = true answer.

    .. math:: L = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\Big(\beta\big[(\log\pi_\theta(y^{idk}) - \log\pi_{ref}(y^{idk}))
              - (\log\pi_\theta(y) - \log\pi_{ref}(y))\big]\Big)

    (the 2/β factor follows the reference code). Args: all (B,) summed log-probs.
    """
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


def rmu_control(hidden_size: int, *, seed: int, coeff: float) -> torch.Tensor:
    """c·u with u a fixed random unit vector (uniform [0,1) entries normalised, as the WMDP code), (H,)."""
    u = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return coeff * u / u.norm()


def rmu_loss(forget_hidden: torch.Tensor, forget_mask: torch.Tensor, control: torch.Tensor,
             retain_hidden: torch.Tensor, ref_retain_hidden: torch.Tensor, retain_mask: torch.Tensor, *,
             retain_weight: float = 1200.0) -> torch.Tensor:
    r"""Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv:2403.03218), at layer ℓ.

    .. math:: L_{RMU} = \frac{1}{H}\,\mathbb{E}_{t\in x_f}\|h^\ell_\theta(t) - c\,u\|_2^2
              + \alpha_r\,\frac{1}{H}\,\mathbb{E}_{t\in x_r}\|h^\ell_\theta(t) - h^\ell_{ref}(t)\|_2^2

    (the reference code's MSE: squared norm / H, averaged over non-padding tokens).
    Args: forget_hidden (B,T,H), forget_mask (B,T), control (H,), retain_hidden / ref_retain_hidden
    (B',T',H), retain_mask (B',T'); retain_weight α_r.
    """
    def masked_mse(h, target, mask):
        per_tok = (h.float() - target.float()).pow(2).mean(-1)
        return (per_tok * mask).sum() / mask.sum().clamp(min=1)

    return (masked_mse(forget_hidden, control, forget_mask.float())
            + retain_weight * masked_mse(retain_hidden, ref_retain_hidden, retain_mask.float()))


def positions(views, name: str, which: str) -> torch.Tensor:
    """(B,T-1) mask of the next-token distributions to use: those predicting an answer token ('answer'),
    any real question/answer token ('qa'), or every position including padding ('qa+padding' / 'all')."""
    if which == "answer":
        return views.logps(name).mask
    mask = views.view(name)["attention_mask"][:, 1:].float()
    return mask if which == "qa" else torch.ones_like(mask)


def rmu_layer(model, cfg) -> int:
    n = len(decoder_layers(model))
    return cfg.rmu_layer if cfg.rmu_layer is not None else min(7, n // 2)


def rmu_params(model, cfg) -> list[torch.nn.Parameter]:
    """RMU trains only the MLPs of layers ℓ−2..ℓ."""
    layers, top = decoder_layers(model), rmu_layer(model, cfg)
    return [p for i in range(max(0, top - 2), top + 1) for p in layers[i].mlp.parameters()]


def _rmu_inputs(v, cfg):
    layer = rmu_layer(v.model, cfg)
    h_f = v.hidden("forget", layer)
    return dict(forget_hidden=h_f, forget_mask=v.view("forget")["attention_mask"],
                control=rmu_control(h_f.shape[-1], seed=cfg.seed, coeff=cfg.rmu_coeff).to(h_f),
                retain_hidden=v.hidden("retain", layer), ref_retain_hidden=v.ref_hidden("retain", layer),
                retain_mask=v.view("retain")["attention_mask"], retain_weight=cfg.rmu_retain_weight)


OBJECTIVES = {
    "ga": Part(ga_loss, lambda v, c: dict(forget_mean_logps=v.logps("forget").mean())),
    "npo": Part(npo_loss, lambda v, c: dict(
        forget_logps=v.logps("forget").sum(), ref_forget_logps=v.cached_ref_logps("forget"), beta=c.npo_beta,
        forget_lengths=v.logps("forget").lengths, granularity=c.npo_granularity), frozenset({"ref_logps"})),
    "simnpo": Part(simnpo_loss, lambda v, c: dict(
        forget_mean_logps=v.logps("forget").mean(), beta=c.simnpo_beta, gamma=c.simnpo_gamma)),
    "me": Part(me_loss, lambda v, c: dict(forget_logits=v.logps("forget", logits=True).logits,
                                          position_mask=positions(v, "forget", c.me_positions), form=c.me_form)),
    "idk": Part(idk_loss, lambda v, c: dict(alternate_mean_logps=v.logps("alternate").mean()),
                frozenset({"alternate"})),
    "dpo": Part(dpo_loss, lambda v, c: dict(
        chosen_logps=v.logps("alternate").sum(), rejected_logps=v.logps("forget").sum(),
        ref_chosen_logps=v.cached_ref_logps("alternate"), ref_rejected_logps=v.cached_ref_logps("forget"),
        beta=c.dpo_beta), frozenset({"alternate", "ref_logps"})),
    "rmu": Part(rmu_loss, _rmu_inputs, frozenset({"retain", "ref_model", "params"}), params=rmu_params),
}
