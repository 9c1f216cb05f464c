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

Packed rows (`pack=True`, the default): a right-padded batch runs as one packed row without padding, and
a prefix every row shares (a chat template's system turn: 24 of SmolLM2's ≈ 54 tokens per TOFU item) appears in it
once. A 4-D mask lets each token attend to the prefix and, causally, to its own row; positions are each row's own.
The prefix's gradient is the sum over the rows that attend to it, so values and gradients are the padded pass's
up to float rounding, with fewer tokens through every layer (training, reference cache, probes). Used with sdpa/eager
attention, without active dropout, up to `PACK_MAX` packed tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.data.format import IGNORE_INDEX

CHUNK = 1024  # answer positions per logsumexp chunk (N×V floats at most CHUNK×V at once when no grad is kept)
MIN_SHARED = 8  # a shared prefix shorter than this is not shared (rows are still packed without padding)
PACK_MAX = 1024  # packed tokens at most: attention over the packed row is (N×N), most of it masked out


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


PACK_ATTENTION = ("sdpa", "eager")  # attention implementations that take a 4-D boolean mask


def can_pack(model) -> bool:
    """Whether packed rows give the padded pass's values: a model (not a smoother's functional forward) whose
    attention takes a 4-D mask, without active dropout (the prefix would share one dropout mask across rows)."""
    if not isinstance(model, torch.nn.Module):
        return False
    base = getattr(model, "module", model)  # DDP
    base = base.get_base_model() if hasattr(base, "get_base_model") else base  # peft
    if getattr(getattr(base, "config", None), "_attn_implementation", None) not in PACK_ATTENTION:
        return False
    if not model.training:
        return True
    return not (float(getattr(base.config, "attention_dropout", 0) or 0) > 0
                or any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()))


def pack_prefix(batch: dict[str, torch.Tensor], keep: torch.Tensor) -> int | None:
    """How to pack a right-padded batch: the length c of the token prefix every row shares and attends to,
    ending at or before the first position whose logits are kept (`keep` (B,T)), leaving each row ≥ 1 token
    (0 when shorter than `MIN_SHARED`: rows are packed without sharing); None when packing does not apply
    (one row; a left-padded batch, whose positions differ per row; a mask with holes, as open-unlearning's
    `ids != pad id`; more than `PACK_MAX` packed tokens)."""
    ids, am = batch["input_ids"], batch["attention_mask"]
    lens = am.sum(-1, keepdim=True)
    if ids.shape[0] < 2 or not bool((am.bool() == (torch.arange(am.shape[1], device=am.device) < lens)).all()):
        return None  # one row, or a mask that is not each row's first tokens (left padding, masked pad ids)
    same = ((ids == ids[:1]) & am.bool()).all(0)
    c = int(same.long().cumprod(0).sum())
    kept = keep.any(0).nonzero()
    c = min(c, int(kept[0]) if len(kept) else c, ids.shape[1] - 1)
    c = c if c >= MIN_SHARED else 0
    return c if int(am.sum()) - c * (ids.shape[0] - 1) <= PACK_MAX else None


def packed_forward(model, ids: torch.Tensor, seg: torch.Tensor, parent: torch.Tensor, pos: torch.Tensor,
                   keep: torch.Tensor, hide: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (N, V) at the `keep` positions of one packed row of segments: token q attends to token k when
    pos[k] ≤ pos[q] and k is in q's segment or in q's parent segment (`seg`, `parent`, `pos`, `keep`: (T,)), and
    k is not hidden (`hide` (T,), e.g. open-unlearning's pad-id tokens); positions are each segment's own."""
    allowed = (pos[:, None] >= pos[None, :]) & ((seg[None, :] == seg[:, None]) | (seg[None, :] == parent[:, None]))
    if hide is not None:
        allowed &= ~hide[None, :]
    out = model(input_ids=ids[None], attention_mask=allowed[None, None], position_ids=pos[None],
                logits_to_keep=keep[None])
    return out.logits[0, keep] if out.logits.dim() == 3 else out.logits


def _packed_logits(model, batch: dict[str, torch.Tensor], keep: torch.Tensor, c: int) -> torch.Tensor:
    """Logits at the kept positions, in the batch's row-major order, from one forward over one packed row:
    the shared prefix (c tokens, segment −1) once, then each row's tokens c.. without padding, at their own
    positions, each row's parent the prefix; the prefix's keys/values serve every row, so its gradient is the
    sum over rows, as in the padded batch."""
    ids, am = batch["input_ids"], batch["attention_mask"]
    lens = am.sum(-1).tolist()
    dev = ids.device
    rows = range(ids.shape[0])
    packed = torch.cat([ids[0, :c]] + [ids[i, c:lens[i]] for i in rows])
    seg = torch.cat([torch.full((c,), -1, device=dev)] + [torch.full((lens[i] - c,), i, device=dev) for i in rows])
    pos = torch.cat([torch.arange(c, device=dev)] + [torch.arange(c, lens[i], device=dev) for i in rows])
    kept = torch.cat([keep[0, :c]] + [keep[i, c:lens[i]] for i in rows])
    return packed_forward(model, packed, seg, torch.full_like(seg, -1), pos, kept)


def sequence_logps(model, batch: dict[str, torch.Tensor], *, return_logits: bool = False,
                   answer_logits: bool = False, pack: bool = True) -> SequenceLogps:
    """One forward pass of `model` on `batch` (moved to the model's device); answer-token log-probs under it.
    `pack`: run a right-padded batch as one packed row (module docstring) where `can_pack(model)`."""
    from obliviate.models.device import to_device

    batch = to_device(batch, model)
    if return_logits:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token_logps, mask = gather_token_logps(logits, batch["labels"])
        return SequenceLogps(token_logps, mask, logits[:, :-1])
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX  # (B,T-1): position t predicts answer token t+1
    keep = torch.nn.functional.pad(mask, (0, 1))  # (B,T) the positions whose logits are needed
    c = pack_prefix(batch, keep) if pack and can_pack(model) else None
    if c is not None:
        logits = _packed_logits(model, batch, keep, c)
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logits_to_keep=keep).logits
    if logits.dim() == 3:  # a model without boolean `logits_to_keep`: it returned every position
        logits = logits[keep]
    token_logps = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    token_logps = token_logps.masked_scatter(mask, selective_logps(logits, labels[mask]))
    return SequenceLogps(token_logps, mask.float(), None, logits if answer_logits else None)
