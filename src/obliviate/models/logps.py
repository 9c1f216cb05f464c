"""Per-token log-probabilities: the only shift-and-gather in obliviate.

    out = sequence_logps(model, batch)      # batch: input_ids, attention_mask, labels (B,T)
    out.token_logps   # (B,T-1) log π(y_t | x, y_<t) at answer positions, 0 elsewhere
    out.mask          # (B,T-1) 1.0 at answer positions (labels != -100)
    out.sum()         # (B,) log π(y|x) summed over answer tokens   = -NLL_sum
    out.mean()        # (B,) mean over answer tokens                 = -NLL_mean
    out.logits        # (B,T-1,V) shifted logits, when return_logits=True (ME, KL need them)

log p = logit[y] − logsumexp(logits): no B×T×V log-softmax tensor is materialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.data.format import IGNORE_INDEX


@dataclass
class SequenceLogps:
    token_logps: torch.Tensor  # (B, T-1)
    mask: torch.Tensor  # (B, T-1) float
    logits: torch.Tensor | None = None  # (B, T-1, V)

    def sum(self) -> torch.Tensor:
        return (self.token_logps * self.mask).sum(-1)

    def mean(self) -> torch.Tensor:
        return self.sum() / self.mask.sum(-1).clamp(min=1)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by one and gather: logits (B,T,V), labels (B,T) → token log-probs (B,T-1), mask (B,T-1)."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    safe = labels.masked_fill(~mask, 0)
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1).float()
    token_logps = (picked - torch.logsumexp(logits.float(), dim=-1)) * mask
    return token_logps, mask.float()


def sequence_logps(model, batch: dict[str, torch.Tensor], *, return_logits: bool = False) -> SequenceLogps:
    """One forward pass of `model` on `batch`; answer-token log-probs under it."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    token_logps, mask = gather_token_logps(logits, batch["labels"])
    return SequenceLogps(token_logps, mask, logits[:, :-1] if return_logits else None)
