"""Forget objectives (SPEC §1): pure functions on tensors, each with its equation, plus the registry.

Shapes: B sequences, T positions, V vocabulary, H hidden size. `*_logps` are log π(y|x) summed
over answer tokens (B,); `*_mean_logps` are the per-token means (B,) = −NLL_mean. Minimising
each loss *removes* the forget answers.

Every mean is over the effective batch: `batch_size` (B of a per-sequence mean) and `n_*` (N of a token mean)
are the effective batch's counts when the tensors hold one of its micro-batches (None: these tensors' own), so
the micro-batches' losses sum to the effective batch's loss (`unlearn.forward`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from obliviate.parity import convention
from obliviate.unlearn.forward import Part, answer_mask, decoder_layers


def batch_mean(values: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """(1/B)·Σ_i values_i, B = `batch_size` (the effective batch) or len(values)."""
    return values.sum() / (len(values) if batch_size is None else batch_size)


def token_mean(values: torch.Tensor, mask: torch.Tensor, n: float | None = None) -> torch.Tensor:
    """(1/N)·Σ_t mask_t·values_t, N = `n` (the effective batch's count) or mask.sum(), at least 1."""
    mask = mask.float()
    return (values * mask).sum() / (mask.sum().clamp(min=1) if n is None else max(n, 1.0))


def ga_loss(forget_mean_logps: torch.Tensor, *, batch_size: int | None = None, **token_mean_args) -> torch.Tensor:
    r"""Gradient ascent on the forget answers' NLL.

    .. math:: L_{GA} = -\frac{1}{B}\sum_i \mathrm{NLL}_{mean}(y_i|x_i) = \frac{1}{B}\sum_i \frac{1}{|y_i|}\log\pi_\theta(y_i|x_i)

    With `token_logps`, `mask`, `n_tokens` (convention `nll_reduction=token-mean`, `parity=open-unlearning` /
    `closer-look`): the HF loss's one token mean, :math:`\frac1N\sum_{t\in M}\log p_t` (open-unlearning
    src/trainer/unlearn/grad_ascent.py:12-13 at d3d7cf9).
    Args: forget_mean_logps (B,); batch_size B.
    """
    if token_mean_args:
        return nll_token_mean(**token_mean_args)
    return batch_mean(forget_mean_logps, batch_size)


def nll_token_mean(token_logps: torch.Tensor, mask: torch.Tensor, n_tokens: float | None = None) -> torch.Tensor:
    """(1/N)·Σ_{t∈M} log p_t: minus the HF causal-LM loss (one token mean over the batch's answer tokens)."""
    return token_mean(token_logps, mask, n_tokens)


def nll_inputs(v, name: str, c) -> dict:
    """The token-mean kwargs of GA / GD / IdK under `nll_reduction=token-mean` ({} under `sequence-mean`)."""
    if convention("nll_reduction", c.parity) != "token-mean":
        return {}
    lp = v.logps(name)
    return dict(token_logps=lp.token_logps, mask=lp.mask, n_tokens=v.count(name, answer_mask))


def npo_loss(forget_logps: torch.Tensor, ref_forget_logps: torch.Tensor, *, beta: float = 0.1,
             forget_lengths: torch.Tensor | None = None, granularity: str = "sequence",
             batch_size: int | None = None) -> torch.Tensor:
    r"""Negative Preference Optimization (Zhang et al. 2024, arXiv:2404.05868).

    .. math:: L_{NPO} = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\big(\beta\,[\mathrm{NLL}_\theta(y_i|x_i) - \mathrm{NLL}_{ref}(y_i|x_i)]\big)
              = \frac{2}{\beta}\frac{1}{B}\sum_i \log\Big(1 + \big(\tfrac{\pi_\theta(y_i|x_i)}{\pi_{ref}(y_i|x_i)}\big)^\beta\Big)

    `granularity="sequence"`: NLL summed per sequence (the paper). `"token_mean"`: one NLL per batch,
    averaged over all its answer tokens (the WMDP code of the SAM paper), then a single log σ: not a sum over
    micro-batches, so it needs the whole batch in one (`micro_batch=batch_size`).

    Args: forget_logps (B,), ref_forget_logps (B,) summed log-probs; forget_lengths (B,) answer tokens
    (token_mean only); batch_size B.
    """
    if granularity == "token_mean":
        n = forget_lengths.sum().clamp(min=1)
        return -(2.0 / beta) * F.logsigmoid(beta * (ref_forget_logps.sum() - forget_logps.sum()) / n)
    return -(2.0 / beta) * batch_mean(F.logsigmoid(beta * (ref_forget_logps - forget_logps)), batch_size)


def simnpo_loss(forget_mean_logps: torch.Tensor, *, beta: float = 2.5, gamma: float = 0.0,
                batch_size: int | None = None) -> torch.Tensor:
    r"""SimNPO, reference-free and length-normalised (Fan et al. 2024, arXiv:2410.07163).

    .. math:: L_{SimNPO} = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\Big(-\frac{\beta}{|y_i|}\log\pi_\theta(y_i|x_i) - \gamma\Big)

    γ = β·δ for open-unlearning's margin δ (its SimNPO.yaml: β = 4.5, δ = 0; its 0.125 is the forget-loss weight
    α, src/trainer/unlearn/simnpo.py:19-20,30 at d3d7cf9). |y| counts the predicted tokens; under
    `simnpo_length=unshifted` (`parity=open-unlearning`) the unshifted label count, |y|+1 on raw text whose first
    token is labelled (simnpo.py:17-19), see `simnpo_inputs`.
    Args: forget_mean_logps (B,) = (1/|y|) log π_θ(y|x); beta, gamma (margin γ_s); batch_size B.
    """
    return -(2.0 / beta) * batch_mean(F.logsigmoid(-beta * forget_mean_logps - gamma), batch_size)


def me_loss(forget_logits: torch.Tensor, position_mask: torch.Tensor, *, form: str = "code",
            n_positions: float | None = None) -> torch.Tensor:
    r"""Maximise entropy on forget positions (seed A): push each next-token distribution P_t to uniform U.

    .. math:: \text{paper: } \mathrm{KL}(P_t\,\|\,U) = \log V - H(P_t) \qquad
              \text{code: } \mathrm{KL}(U\,\|\,P_t) = -\log V - \frac{1}{V}\sum_v \log P_t(v)

    averaged over the N positions where `position_mask` is 1. The code form (default) has gradient
    `p − 1/V` in the logits; the paper form's `p(log p + H)` vanishes near one-hot distributions.

    Args: forget_logits (B,T,V); position_mask (B,T); n_positions N.
    """
    logp = torch.log_softmax(forget_logits.float(), dim=-1)
    log_v = math.log(logp.shape[-1])
    if form == "paper":
        per_pos = (logp.exp() * logp).sum(-1) + log_v
    else:
        per_pos = -logp.mean(-1) - log_v
    return token_mean(per_pos, position_mask, n_positions)


def simnpo_mean_logps(v, c) -> torch.Tensor:
    """(B,) log π_θ(y|x)/|y| of the forget view; |y| the shifted (predicted) or, under `simnpo_length=unshifted`,
    the unshifted label count (open-unlearning src/trainer/unlearn/simnpo.py:17-19 at d3d7cf9)."""
    lp = v.logps("forget")
    if convention("simnpo_length", c.parity) != "unshifted":
        return lp.mean()
    return lp.sum() / (v.view("forget")["labels"] != -100).sum(-1).clamp(min=1)


def idk_loss(alternate_mean_logps: torch.Tensor, *, batch_size: int | None = None, **token_mean_args) -> torch.Tensor:
    r"""Fine-tune on a refusal ("I don't know") for each forget question.

    .. math:: L_{IdK} = \frac{1}{B}\sum_i \mathrm{NLL}_{mean}(y^{idk}_i|x_i)

    `token_mean_args`: the HF token mean instead (`nll_reduction=token-mean`, as `ga_loss`).
    Args: alternate_mean_logps (B,) mean log-probs of the refusals; batch_size B.
    """
    if token_mean_args:
        return -nll_token_mean(**token_mean_args)
    return -batch_mean(alternate_mean_logps, batch_size)


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, *, beta: float = 0.1, batch_size: int | None = None) -> torch.Tensor:
    r"""IdkDPO: DPO (Rafailov et al. 2023, arXiv:2305.18290) with chosen = refusal, rejected = true answer.

    .. math:: L = -\frac{2}{\beta}\frac{1}{B}\sum_i \log\sigma\Big(\beta\big[(\log\pi_\theta(y^{idk}) - \log\pi_{ref}(y^{idk}))
              - (\log\pi_\theta(y) - \log\pi_{ref}(y))\big]\Big)

    (the 2/β factor follows the reference code). Args: all (B,) summed log-probs; batch_size B.
    """
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -(2.0 / beta) * batch_mean(F.logsigmoid(beta * margin), batch_size)


def _reweighted_ga(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, weight, n_tokens) -> torch.Tensor:
    """(1/N)·Σ_{t∈M} w(sg(p_t))·log p_t over the N answer tokens of the batch (the token mean of open-unlearning)."""
    w = weight(forget_token_logps.detach().exp())
    return token_mean(w * forget_token_logps, forget_mask, n_tokens)


def wga_loss(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, *, beta: float = 1.0,
             n_tokens: float | None = None) -> torch.Tensor:
    r"""Weighted gradient ascent, WGA (Wang et al. 2025, arXiv:2502.19301), per answer token.

    "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond", https://arxiv.org/abs/2502.19301

    .. math:: L_{WGA} = -\frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta}\,\mathrm{NLL}_t
              = \frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta}\log p_t, \qquad p_t = \pi_\theta(y_t|x, y_{<t})

    M = the N answer tokens of the batch (a token mean, as open-unlearning's `compute_wga_loss`); the
    weight carries no gradient, so dL/d log p_t = p_t^β / N: tokens the model already finds unlikely are
    pushed less. β = 0 is gradient ascent with a token mean (= `ga` when all answers have the same length).
    Args: forget_token_logps (B,T) log p_t; forget_mask (B,T) 1 at answer tokens; n_tokens N.
    """
    return _reweighted_ga(forget_token_logps, forget_mask, lambda p: p ** beta, n_tokens)


def satimp_loss(forget_token_logps: torch.Tensor, forget_mask: torch.Tensor, *, beta1: float = 5.0,
                beta2: float = 1.0, n_tokens: float | None = None) -> torch.Tensor:
    r"""Saturation–importance reweighted gradient ascent, SatImp (Yang et al. 2025, arXiv:2505.11953).

    "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", https://arxiv.org/abs/2505.11953

    .. math:: L_{SatImp} = -\frac{1}{N}\sum_{t\in M} \mathrm{sg}(p_t)^{\beta_1}\,\mathrm{sg}(1 - p_t)^{\beta_2}\,\mathrm{NLL}_t

    Saturation (p^β₁) down-weights tokens already unlearned; importance ((1−p)^β₂) down-weights tokens the
    model is sure of. Token mean over the N answer tokens; weights detached (dL/d log p_t = p^β₁(1−p)^β₂/N);
    β₁ = β₂ = 0 is gradient ascent with a token mean. Args: forget_token_logps (B,T); forget_mask (B,T); n_tokens N.
    """
    return _reweighted_ga(forget_token_logps, forget_mask, lambda p: p ** beta1 * (1 - p) ** beta2, n_tokens)


def _soft_ce(logits: torch.Tensor, soft_target: torch.Tensor, n_rows: float | None) -> torch.Tensor:
    """(1/N)·Σ_rows −Σ_v q_v log softmax(z)_v, N = `n_rows` or the rows here; 0 (with a gradient path) for none."""
    ce = -(soft_target * torch.log_softmax(logits, dim=-1)).sum(-1)
    return ce.sum() / max(len(ce) if n_rows is None else n_rows, 1)


def undial_loss(forget_logits: torch.Tensor, ref_forget_logits: torch.Tensor, forget_targets: torch.Tensor,
                forget_mask: torch.Tensor, *, beta: float = 10.0, n_tokens: float | None = None) -> torch.Tensor:
    r"""Self-distillation on the reference's adjusted logits, UNDIAL (Dong et al. 2024, arXiv:2402.10052).

    "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
    https://arxiv.org/abs/2402.10052

    .. math:: L_{UNDIAL} = \frac{1}{N}\sum_{t\in M} \mathrm{CE}\big(\mathrm{softmax}(z^{ref}_t - \beta\,e_{y_t}),\;
              \pi_\theta(\cdot|x, y_{<t})\big)

    The student matches the frozen reference's next-token distribution with the true token's logit
    lowered by β: a fixed target, so the loss is minimised rather than maximised. Averaged over the N
    answer tokens (open-unlearning's code averages over every position, prompt and padding included, and
    there lowers logit V−100 because the label is −100). Only the answer rows' (N,V) logits are softmaxed.
    Args: forget_logits, ref_forget_logits (B,T,V); forget_targets (B,T) y_t; forget_mask (B,T); n_tokens N.
    """
    rows = forget_mask.bool()
    z, y = forget_logits[rows].float(), forget_targets[rows]
    adjusted = ref_forget_logits[rows].float().detach().scatter_add(
        -1, y.unsqueeze(-1), torch.full_like(y, -beta, dtype=torch.float).unsqueeze(-1))
    return _soft_ce(z, torch.softmax(adjusted, dim=-1), n_tokens)


def ceu_loss(forget_logits: torch.Tensor, forget_targets: torch.Tensor, forget_mask: torch.Tensor, *,
             ignore_first_n: int = 1, n_tokens: float | None = None) -> torch.Tensor:
    r"""Cross-entropy unlearning against the model's own answer-free distribution, CE-U (arXiv:2503.01224).

    "CE-U: Cross Entropy Unlearning", https://arxiv.org/abs/2503.01224

    .. math:: L_{CE\text{-}U} = \frac{1}{N}\sum_{t\in M_n} \mathrm{CE}\big(\mathrm{softmax}(\mathrm{sg}(z_t)
              \text{ with } z_t[y_t] = -\infty),\; \pi_\theta(\cdot|x, y_{<t})\big)

    The target is the model's own (detached) distribution with the true token removed and the rest
    renormalised; the logit gradient is softmax(z) − target, p(y_t) at the true token (pushed down) and
    −p_v·p(y_t)/(1 − p(y_t)) elsewhere, so it vanishes once p(y_t) = 0 instead of diverging like GA.
    M_n = answer tokens after each answer's first n (the paper's footnote; open-unlearning's
    `ignore_first_n_answer_tokens`), N = |M_n| (`n_tokens`). Args: forget_logits (B,T,V); forget_targets (B,T);
    forget_mask (B,T).
    """
    rows = after_first(forget_mask, ignore_first_n).bool()
    z, y = forget_logits[rows].float(), forget_targets[rows]
    target = torch.softmax(z.detach().scatter(-1, y.unsqueeze(-1), float("-inf")), dim=-1)
    return _soft_ce(z, target, n_tokens)


def after_first(mask: torch.Tensor, n: int) -> torch.Tensor:
    """(B,T) `mask` without each row's first n ones (CE-U's M_n)."""
    mask = mask.float()
    return mask * (mask.cumsum(-1) > n)


def rmu_control(hidden_size: int, *, seed: int, coeff: float) -> torch.Tensor:
    """c·u with u a fixed random unit vector (uniform [0,1) entries normalised, as the WMDP code), (H,)."""
    u = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return coeff * u / u.norm()


def rmu_loss(forget_hidden: torch.Tensor, forget_mask: torch.Tensor, control: torch.Tensor,
             retain_hidden: torch.Tensor, ref_retain_hidden: torch.Tensor, retain_mask: torch.Tensor, *,
             retain_weight: float = 1200.0, n_forget_tokens: float | None = None,
             n_retain_tokens: float | None = None, batch_size: int | None = None,
             retain_batch_size: int | None = None) -> torch.Tensor:
    r"""Representation Misdirection for Unlearning (Li et al. 2024, WMDP, arXiv:2403.03218), at layer ℓ.

    .. math:: L_{RMU} = \frac{1}{H}\,\mathbb{E}_{t\in x_f}\|h^\ell_\theta(t) - c\,u\|_2^2
              + \alpha_r\,\frac{1}{H}\,\mathbb{E}_{t\in x_r}\|h^\ell_\theta(t) - h^\ell_{ref}(t)\|_2^2

    (WMDP's code, centerforaisafety/wmdp rmu/unlearn.py: MSE = squared norm / H, one mean over the non-padding tokens).
    With `batch_size` / `retain_batch_size` given (convention `rmu_reduction=sequence-mean`, `parity=open-unlearning`)
    each sequence's masked mean first, then the batch mean, masks on the answer tokens (open-unlearning
    src/trainer/unlearn/rmu.py:108-117,129,158 at d3d7cf9).
    Args: forget_hidden (B,T,H), forget_mask (B,T), control (H,), retain_hidden / ref_retain_hidden
    (B',T',H), retain_mask (B',T'); retain_weight α_r; n_forget_tokens, n_retain_tokens the tokens each mean is over.
    """
    def mse(h, target):
        return (h.float() - target.float()).pow(2).mean(-1)

    def mean(values, mask, n, b):
        if b is None:
            return token_mean(values, mask, n)
        mask = mask.float()
        return batch_mean((values * mask).sum(-1) / mask.sum(-1).clamp(min=1), b)

    return (mean(mse(forget_hidden, control), forget_mask, n_forget_tokens, batch_size)
            + retain_weight * mean(mse(retain_hidden, ref_retain_hidden), retain_mask, n_retain_tokens,
                                   retain_batch_size))


def position_mask(view: dict[str, torch.Tensor], which: str) -> torch.Tensor:
    """(B,T-1) mask of the next-token distributions to use: those predicting an answer token ('answer'),
    any real question/answer token ('qa'), or every position including padding ('qa+padding' / 'all'; a
    micro-batch keeps its effective batch's padded width, so the count does not depend on the split)."""
    if which == "answer":
        return answer_mask(view)
    mask = view["attention_mask"][:, 1:].float()
    return mask if which == "qa" else torch.ones_like(mask)


def positions(views, name: str, which: str) -> dict:
    """`position_mask` of the micro-batch and N, its count over the effective batch: kwargs of a token mean."""
    return dict(position_mask=position_mask(views.view(name), which),
                n_positions=views.count(name, lambda v: position_mask(v, which)))


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


def _tokens(view: dict[str, torch.Tensor]) -> torch.Tensor:
    return view["attention_mask"]


def _answer_tokens(view: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B,T) 1 at the labelled (answer) tokens, unshifted: open-unlearning's RMU mask `labels != -100`."""
    return (view["labels"] != -100).long()


def _rmu_inputs(v, cfg):
    layer = rmu_layer(v.model, cfg)
    h_f = v.hidden("forget", layer)
    per_seq = convention("rmu_reduction", cfg.parity) == "sequence-mean"
    tokens = _answer_tokens if per_seq else _tokens
    seq = dict(batch_size=v.batch_size, retain_batch_size=len(v.step.retain["input_ids"])) if per_seq else {}
    return dict(forget_hidden=h_f, forget_mask=tokens(v.view("forget")),
                control=rmu_control(h_f.shape[-1], seed=cfg.seed, coeff=cfg.rmu_coeff).to(h_f),
                retain_hidden=v.hidden("retain", layer), ref_retain_hidden=v.ref_hidden("retain", layer),
                retain_mask=tokens(v.view("retain")), retain_weight=cfg.rmu_retain_weight,
                n_forget_tokens=v.count("forget", tokens), n_retain_tokens=v.count("retain", tokens), **seq)


OBJECTIVES = {
    "ga": Part(ga_loss, lambda v, c: dict(forget_mean_logps=v.logps("forget").mean(), batch_size=v.batch_size,
                                          **nll_inputs(v, "forget", c)), logps_of=("forget",)),
    "npo": Part(npo_loss, lambda v, c: dict(
        forget_logps=v.logps("forget").sum(), ref_forget_logps=v.cached_ref_logps("forget"), beta=c.npo_beta,
        forget_lengths=v.logps("forget").lengths, granularity=c.npo_granularity, batch_size=v.batch_size),
        frozenset({"ref_logps"}),
        whole_batch=lambda c: "npo_granularity=token_mean" if c.npo_granularity == "token_mean" else None,
        logps_of=("forget",)),
    "simnpo": Part(simnpo_loss, lambda v, c: dict(
        forget_mean_logps=simnpo_mean_logps(v, c), beta=c.simnpo_beta, gamma=c.simnpo_gamma,
        batch_size=v.batch_size), logps_of=("forget",)),
    "me": Part(me_loss, lambda v, c: dict(forget_logits=v.logps("forget", logits=True).logits,
                                          **positions(v, "forget", c.me_positions), form=c.me_form),
               counts_padding=lambda c: c.me_positions == "qa+padding"),
    "idk": Part(idk_loss, lambda v, c: dict(alternate_mean_logps=v.logps("alternate").mean(),
                                            batch_size=v.batch_size, **nll_inputs(v, "alternate", c)),
                frozenset({"alternate"}), logps_of=("alternate",)),
    "dpo": Part(dpo_loss, lambda v, c: dict(
        chosen_logps=v.logps("alternate").sum(), rejected_logps=v.logps("forget").sum(),
        ref_chosen_logps=v.cached_ref_logps("alternate"), ref_rejected_logps=v.cached_ref_logps("forget"),
        beta=c.dpo_beta, batch_size=v.batch_size), frozenset({"alternate", "ref_logps"}),
        logps_of=("alternate", "forget")),
    "rmu": Part(rmu_loss, _rmu_inputs, frozenset({"retain", "ref_model", "params"}), params=rmu_params),
    "wga": Part(wga_loss, lambda v, c: dict(
        forget_token_logps=v.logps("forget").token_logps, forget_mask=v.logps("forget").mask, beta=c.wga_beta,
        n_tokens=v.count("forget", answer_mask)), logps_of=("forget",)),
    "satimp": Part(satimp_loss, lambda v, c: dict(
        forget_token_logps=v.logps("forget").token_logps, forget_mask=v.logps("forget").mask,
        beta1=c.satimp_beta1, beta2=c.satimp_beta2, n_tokens=v.count("forget", answer_mask)), logps_of=("forget",)),
    "undial": Part(undial_loss, lambda v, c: dict(
        forget_logits=v.logps("forget", logits=True).logits, ref_forget_logits=v.ref_logps("forget").logits,
        forget_targets=answer_targets(v, "forget"), forget_mask=v.logps("forget").mask, beta=c.undial_beta,
        n_tokens=v.count("forget", answer_mask)), frozenset({"ref_model"})),
    "ceu": Part(ceu_loss, lambda v, c: dict(
        forget_logits=v.logps("forget", logits=True).logits, forget_targets=answer_targets(v, "forget"),
        forget_mask=v.logps("forget").mask, ignore_first_n=c.ceu_ignore_first_n,
        n_tokens=v.count("forget", lambda b: after_first(answer_mask(b), c.ceu_ignore_first_n)))),
}
