"""Per-token log-probabilities: the only shift-and-gather in obliviate.

    out = sequence_logps(model, batch)      # batch: input_ids, attention_mask, labels (B,T)
    out.token_logps   # (B,T-1) log π(y_t | x, y_<t) at answer positions, 0 elsewhere
    out.mask          # (B,T-1) 1.0 at answer positions (labels != -100)
    out.sum()         # (B,) log π(y|x) summed over answer tokens   = -NLL_sum
    out.mean()        # (B,) mean over answer tokens                 = -NLL_mean
    out.logits        # (B,T-1,V) shifted logits, when return_logits=True (ME, KL need every position)
    out.answer_logits # (N,V) logits at the N answer positions (row-major), when answer_logits=True

Without `return_logits`, `lm_head` is applied to the hidden states of the answer positions only
(transformers' `logits_to_keep` with a boolean mask): a chat-template question is most of each
sequence, so most of the B×T×V logits (and their log-softmax in the backward pass) are never formed.
log p = logit[y] − logsumexp(logits), chunked over positions: no B×T×V log-softmax tensor is materialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.data.format import IGNORE_INDEX

CHUNK = 1024  # answer positions per logsumexp chunk (N×V floats at most CHUNK×V at once when no grad is kept)


@dataclass
class SequenceLogps:
    token_logps: torch.Tensor  # (B, T-1)
    mask: torch.Tensor  # (B, T-1) float
    logits: torch.Tensor | None = None  # (B, T-1, V)
    answer_logits: torch.Tensor | None = None  # (N, V), N = mask.sum()

    def sum(self) -> torch.Tensor:
        return (self.token_logps * self.mask).sum(-1)

    def mean(self) -> torch.Tensor:
        return self.sum() / self.mask.sum(-1).clamp(min=1)

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)


def selective_logps(logits: torch.Tensor, targets: torch.Tensor, *, chunk: int = CHUNK) -> torch.Tensor:
    """log softmax(logits)[target] per row: logits (N,V), targets (N,) → (N,), `chunk` rows at a time."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float()
    if logits.shape[0] <= chunk:
        return picked - torch.logsumexp(logits.float(), dim=-1)
    lse = torch.cat([torch.logsumexp(logits[i:i + chunk].float(), dim=-1) for i in range(0, logits.shape[0], chunk)])
    return picked - lse


def gather_token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift by one and gather: logits (B,T,V), labels (B,T) → token log-probs (B,T-1), mask (B,T-1)."""
    logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != IGNORE_INDEX
    safe = labels.masked_fill(~mask, 0)
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1).float()
    token_logps = (picked - torch.logsumexp(logits.float(), dim=-1)) * mask
    return token_logps, mask.float()


def sequence_logps(model, batch: dict[str, torch.Tensor], *, return_logits: bool = False,
                   answer_logits: bool = False) -> SequenceLogps:
    """One forward pass of `model` on `batch` (moved to the model's device); answer-token log-probs under it."""
    from obliviate.models.device import to_device

    batch = to_device(batch, model)
    if return_logits:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token_logps, mask = gather_token_logps(logits, batch["labels"])
        return SequenceLogps(token_logps, mask, logits[:, :-1])
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX  # (B,T-1): position t predicts answer token t+1
    keep = torch.nn.functional.pad(mask, (0, 1))  # (B,T) the positions whose logits are needed
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    if logits.dim() == 3:  # a model without boolean `logits_to_keep`: it returned every position
        logits = logits[keep]
    token_logps = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    token_logps = token_logps.masked_scatter(mask, selective_logps(logits, labels[mask]))
    return SequenceLogps(token_logps, mask.float(), None, logits if answer_logits else None)
