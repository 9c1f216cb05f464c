"""Memorisation and membership-inference scores of one item (re-exported by `evaluate.metrics`).

MIA scores follow open-unlearning's convention: **higher = looks less like a member** (loss-like).
"""

from __future__ import annotations

import zlib

import torch


# --------------------------------------------------------------------------------- memorisation / MIA


def loss_score(nll_mean: float) -> float:
    """LOSS attack (Yeom et al. 2018): the answer's NLL_mean (members have lower loss)."""
    return float(nll_mean)


def zlib_score(nll_mean: float, text: str) -> float:
    """zlib attack (Carlini et al. 2021): NLL_mean over the zlib-compressed byte length of the text.

    .. math:: s = \\mathrm{NLL}_{mean} / |\\mathrm{zlib}(text)|
    """
    return float(nll_mean) / len(zlib.compress(text.encode("utf-8")))


def _lowest_k_mean(values: torch.Tensor, k: float) -> float:
    n = max(1, int(values.numel() * k))
    return float(torch.sort(values.float()).values[:n].mean())


def min_k_score(token_logps: torch.Tensor, *, k: float = 0.4) -> float:
    """Min-K% Prob (Shi et al., arXiv:2310.16789): minus the mean of the lowest k·n token log-probs.

    .. math:: s = -\\frac{1}{|K|} \\sum_{t \\in K} \\log p(y_t | y_{<t}),\\quad K = \\text{lowest } \\max(1, \\lfloor kn \\rfloor)

    Args:
        token_logps: (n,) answer-token log-probs of one item.
    """
    return -_lowest_k_mean(token_logps, k)


def min_k_pp_score(token_logps: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, *, k: float = 0.4) -> float:
    """Min-K%++ (Zhang et al., arXiv:2404.02936): Min-K% on log-probs standardised under the model's own
    next-token distribution at each position.

    .. math:: z_t = \\frac{\\log p(y_t) - \\mu_t}{\\sigma_t},\\quad \\mu_t = E_{v\\sim p_t}[\\log p_t(v)],\\quad
              \\sigma_t^2 = E_{v\\sim p_t}[(\\log p_t(v))^2] - \\mu_t^2; \\qquad s = -\\mathrm{mean}(\\text{lowest } k \\text{ of } z)

    Args:
        token_logps, mu, sigma: (n,) each, for one item's answer positions.
    """
    z = (token_logps - mu) / sigma.clamp(min=1e-6)
    return -_lowest_k_mean(z, k)


def mia_item_scores(row: dict, text: str) -> dict[str, float]:
    """The four MIA scores of one item from its forward-pass row (`passes.score_batch`): LOSS, zlib,
    Min-K% and Min-K%++, each loss-like (higher = looks less like a member). `text`: the scored answer."""
    return {"loss": loss_score(row["nll_mean"]), "zlib": zlib_score(row["nll_mean"], text),
            "min_k": row["min_k"], "min_k_pp": row["min_k_pp"]}


def extraction_strength(preds: torch.Tensor, labels: torch.Tensor, *, form: str = "longest-suffix") -> float:
    """Extraction Strength (Carlini et al. 2021 via open-unlearning): the fraction of the answer the model
    completes by itself (teacher-forced argmax) once given the shortest prefix.

    .. math:: ES = 1 - \\frac{1}{n} \\min\\{k : \\hat y_{\\ge k} = y_{\\ge k}\\}

    `form="longest-suffix"` (ours, `parity=paper`): k = n when no suffix matches (ES = 0).
    `form="first-suffix"` (`parity=open-unlearning`): open-unlearning's loop over k = 0..n−1 breaks at the
    first matching suffix and otherwise ends at k = n−1, so no match gives 1/n
    (src/evals/metrics/memorization.py:237-253 at d3d7cf9): ES = max(s, 1)/n, s the longest matching suffix.

    Args:
        preds, labels: (n,) argmax predictions and true tokens at the answer positions.
    """
    n = labels.numel()
    if n == 0:
        return 0.0
    match = (preds == labels).flip(0).long()
    suffix = int(match.cumprod(0).sum())  # length of the longest all-correct suffix
    return (max(suffix, 1) if form == "first-suffix" else suffix) / n


def exact_memorization(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact Memorization (Tirumala et al. 2022 via open-unlearning): fraction of answer tokens whose
    teacher-forced argmax is the true token. :math:`EM = \\frac1n \\sum_t 1[\\arg\\max p_t = y_t]`."""
    n = labels.numel()
    return float((preds == labels).float().mean()) if n else 0.0
