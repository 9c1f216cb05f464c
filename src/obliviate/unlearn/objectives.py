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


def _reweighted_ga(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, weight) -> torch.Tensor:
    """(1/N)·Σ_{t∈M} w(sg(p_t))·log p_t over the N answer tokens of the batch (the token mean of open-unlearning)."""
    mask = forget_mask.float()
    w = weight(forget_token_logps.detach().exp())
    return (w * forget_token_logps * mask).sum() / mask.sum().clamp(min=1)


def wga_loss(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, *, beta: float = 1.0) -> torch.Tensor:
    r"""Weighted gradient ascent, WGA (Wang et al. 2025, arXiv:2502.19301), per answer token.

    "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond", https://arxiv.org/abs/2502.19301

    .. math:: L_{WGA} = -\frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta}\,\mathrm{NLL}_t
              = \frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta}\log p_t, \qquad p_t = \pi_\theta(y_t|x, y_{<t})

    M = the N answer tokens of the batch (a token mean, as open-unlearning's `compute_wga_loss`); the
    weight carries no gradient, so dL/d log p_t = p_t^β / N: tokens the model already finds unlikely are
    pushed less. β = 0 is gradient ascent with a token mean (= `ga` when all answers have the same length).
    Args: forget_token_logps (B,T) log p_t; forget_mask (B,T) 1 at answer tokens.
    """
    return _reweighted_ga(forget_token_logps, forget_mask, lambda p: p ** beta)


def satimp_loss(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, *, beta1: float = 5.0,
                beta2: float = 1.0) -> torch.Tensor:
    r"""Saturation–importance reweighted gradient ascent, SatImp (Yang et al. 2025, arXiv:2505.11953).

    "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", https://arxiv.org/abs/2505.11953

    .. math:: L_{SatImp} = -\frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta_1}\,\mathrm{sg}(1 - p_t)^{\beta_2}\,\mathrm{NLL}_t

    Saturation (p^β₁) down-weights tokens already unlearned; importance ((1−p)^β₂) down-weights tokens the
    model is sure of. Token mean over the N answer tokens; weights detached (dL/d log p_t = p^β₁(1−p)^β₂/N);
    β₁ = β₂ = 0 is gradient ascent with a token mean. Args: forget_token_logps (B,T); forget_mask (B,T).
    """
    return _reweighted_ga(forget_token_logps, forget_mask, lambda p: p ** beta1 * (1 - p) ** beta2)


def _soft_ce(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of −Σ_v q_v log softmax(z)_v; 0 (with a gradient path) for no rows."""
    ce = -(soft_target * torch.log_softmax(logits, dim=-1)).sum(-1)
    return ce.sum() / max(len(ce), 1)


def undial_loss(forget_logits: torch.Tensor, ref_forget_logits: torch.Tensor, forget_targets: torch.Tensor,
                forget_mask: torch.Tensor, *, beta: float = 10.0) -> torch.Tensor:
    r"""Self-distillation on the reference's adjusted logits, UNDIAL (Dong et al. 2024, arXiv:2402.10052).

    "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
    https://arxiv.org/abs/2402.10052

    .. math:: L_{UNDIAL} = \frac{1}{N}\sum_{t\in M} \mathrm{CE}\big(\mathrm{softmax}(z^{ref}_t - \beta\,e_{y_t}),\;
              \pi_\theta(\cdot|x, y_{<t})\big)

    The student matches the frozen reference's next-token distribution with the true token's logit
    lowered by β: a fixed target, so the loss is minimised rather than maximised. Averaged over the N
    answer tokens (open-unlearning's code averages over every position, prompt and padding included, and
    there lowers logit V−100 because the label is −100). Only the answer rows' (N,V) logits are softmaxed.
    Args: forget_logits, ref_forget_logits (B,T,V); forget_targets (B,T) y_t; forget_mask (B,T).
    """
    rows = forget_mask.bool()
    z, y = forget_logits[rows].float(), forget_targets[rows]
    adjusted = ref_forget_logits[rows].float().detach().scatter_add(
        -1, y.unsqueeze(-1), torch.full_like(y, -beta, dtype=torch.float).unsqueeze(-1))
    return _soft_ce(z, torch.softmax(adjusted, dim=-1))


def ceu_loss(forget_logits: torch.Tensor, forget_targets: torch.Tensor, forget_mask: torch.Tensor, *,
             ignore_first_n: int = 1) -> torch.Tensor:
    r"""Cross-entropy unlearning against the model's own answer-free distribution, CE-U (arXiv:2503.01224).

    "CE-U: Cross Entropy Unlearning", https://arxiv.org/abs/2503.01224

    .. math:: L_{CE\text{-}U} = \frac{1}{N}\sum_{t\in M_n} \mathrm{CE}\big(\mathrm{softmax}(\mathrm{sg}(z_t)
              \text{ with } z_t[y_t] = -\infty),\; \pi_\theta(\cdot|x, y_{<t})\big)

    The target is the model's own (detached) distribution with the true token removed and the rest
    renormalised; the logit gradient is softmax(z) − target, p(y_t) at the true token (pushed down) and
    −p_v·p(y_t)/(1 − p(y_t)) elsewhere, so it vanishes once p(y_t) = 0 instead of diverging like GA.
    M_n = answer tokens after each answer's first n (the paper's footnote; open-unlearning's
    `ignore_first_n_answer_tokens`), N = |M_n|. Args: forget_logits (B,T,V); forget_targets (B,T);
    forget_mask (B,T).
    """
    mask = forget_mask.float()
    rows = (mask * (mask.cumsum(-1) > ignore_first_n)).bool()
    z, y = forget_logits[rows].float(), forget_targets[rows]
    target = torch.softmax(z.detach().scatter(-1, y.unsqueeze(-1), float("-inf")), dim=-1)
    return _soft_ce(z, target)


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


def answer_targets(views, name: str) -> torch.Tensor:
    """(B,T-1) next-token ids y_t aligned with `views.logps(name)` (−100 where the mask is 0)."""
    return views.view(name)["labels"][:, 1:]


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
    "wga": Part(wga_loss, lambda v, c: dict(
        forget_token_logps=v.logps("forget").token_logps, forget_mask=v.logps("forget").mask, beta=c.wga_beta)),
    "satimp": Part(satimp_loss, lambda v, c: dict(
        forget_token_logps=v.logps("forget").token_logps, forget_mask=v.logps("forget").mask,
        beta1=c.satimp_beta1, beta2=c.satimp_beta2)),
    "undial": Part(undial_loss, lambda v, c: dict(
        forget_logits=v.logps("forget", logits=True).logits, ref_forget_logits=v.ref_logps("forget").logits,
        forget_targets=answer_targets(v, "forget"), forget_mask=v.logps("forget").mask, beta=c.undial_beta),
        frozenset({"ref_model"})),
    "ceu": Part(ceu_loss, lambda v, c: dict(
        forget_logits=v.logps("forget", logits=True).logits, forget_targets=answer_targets(v, "forget"),
        forget_mask=v.logps("forget").mask, ignore_first_n=c.ceu_ignore_first_n)),
}
