"""One forward pass per (question, answer) sequence feeds every likelihood-based metric.

    rows = forward_scores(model, tok, [("Who wrote X?", "Ann Lee."), ...], batch_size=16)
    rows[0] == {"nll_sum", "nll_mean", "n_tokens", "min_k", "min_k_pp", "extraction_strength",
                "exact_memorization"}

From `sequence_logps` (the only shift-and-gather) we take the answer-token log-probs; from the
same logits, formed only at answer positions (`lm_head` never sees the question), the argmax (Extraction Strength, Exact Memorization)
and the mean/std of log p under the model's own next-token distribution (Min-K%++), computed in
chunks of positions so no B×T×V log-softmax is ever kept. Sequences are sorted by length before
batching (less padding); results come back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from obliviate.data.format import encode_qa, pad_batch, pad_token_id
from obliviate.evaluate.metrics import exact_memorization, extraction_strength, min_k_pp_score, min_k_score
from obliviate.models.logps import sequence_logps


def logp_moments(logits: torch.Tensor, *, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of log p(v) under p = softmax(logits), per row: logits (N,V) → μ (N,), σ (N,).

    .. math:: \\mu = \\sum_v p_v \\log p_v, \\qquad \\sigma^2 = \\sum_v p_v (\\log p_v)^2 - \\mu^2

    Processed `chunk` rows at a time, so only a chunk×V log-softmax exists at once.
    """
    mus, sigmas = [], []
    for start in range(0, logits.shape[0], chunk):
        logp = torch.log_softmax(logits[start:start + chunk].float(), dim=-1)
        p = logp.exp()
        mu = (p * logp).sum(-1)
        var = (p * logp.square()).sum(-1) - mu.square()
        mus.append(mu)
        sigmas.append(var.clamp(min=0).sqrt())
    if not mus:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(mus), torch.cat(sigmas)


@torch.inference_mode()
def score_batch(model, batch: dict[str, torch.Tensor], *, k: float = 0.4, chunk: int = 256) -> list[dict]:
    """Scores of each sequence in a right-padded batch (input_ids, attention_mask, labels: (B,T))."""
    out = sequence_logps(model, batch, answer_logits=True)
    labels = batch["labels"][:, 1:]
    ends = out.mask.sum(-1).long().cumsum(0).tolist()  # answer_logits rows of sequence i: ends[i-1]:ends[i]
    rows = []
    for i in range(labels.shape[0]):
        m = out.mask[i].bool()
        logits = out.answer_logits[(ends[i - 1] if i else 0):ends[i]]  # (n,V)
        logps, targets = out.token_logps[i][m], labels[i][m]  # (n,), (n,)
        n = int(m.sum())
        if n == 0:  # answer truncated away: nothing to score, so no score (not NLL 0 = "probability 1")
            rows.append({"nll_sum": None, "nll_mean": None, "n_tokens": 0, "min_k": None, "min_k_pp": None,
                         "extraction_strength": None, "exact_memorization": None})
            continue
        preds = logits.argmax(-1)
        mu, sigma = logp_moments(logits, chunk=chunk)
        nll_sum = -float(logps.sum())
        rows.append({
            "nll_sum": nll_sum, "nll_mean": nll_sum / n, "n_tokens": n,
            "min_k": min_k_score(logps, k=k), "min_k_pp": min_k_pp_score(logps, mu, sigma, k=k),
            "extraction_strength": extraction_strength(preds, targets),
            "exact_memorization": exact_memorization(preds, targets),
        })
    return rows


def forward_scores(model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16, k: float = 0.4,
                   max_length: int = 512, progress: bool = False, desc: str = "forward") -> list[dict]:
    """`score_batch` over (question, answer) pairs, batched by length; rows in input order."""
    from tqdm.auto import tqdm

    examples = [encode_qa(tokenizer, q, a, max_length=max_length) for q, a in pairs]
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    pad_id = pad_token_id(tokenizer)
    rows: list[dict | None] = [None] * len(examples)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        batch = pad_batch([examples[i] for i in idx], pad_id, side="right")
        for i, row in zip(idx, score_batch(model, batch, k=k)):
            rows[i] = row
    return rows  # type: ignore[return-value]
