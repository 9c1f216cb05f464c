"""Unlearning data: the tokenized views a recipe needs, the deterministic batch plan, and the collator.

Views (each a list of `encode_qa` examples, answer-only labels):
    forget            forget question + true answer                 (always)
    retain            the paired retain question + true answer       (regularisers, rmu)
    alternate         forget question + a refusal                    (idk, dpo)
    retain_alternate  the paired retain question + a refusal         (ap)
A set may be raw text instead (format "text": MUSE raw, WMDP corpora, RWKU passages): each record's `text`
is tokenized and chunked to `max_length` (`encode_text_chunks`, every token a label), so a forget or retain
"item" is one chunk. Text has no question to answer with a refusal: recipes that need the alternate views
(idk, dpo, ap) refuse it with one line.
Refusals are drawn from the fixed list, deterministic per item index and seed. Recipes that need
reference log-probs (npo, dpo) get log π_ref(y|x) of the forget / alternate views computed once
here, before training, and carried in every batch: no reference model in memory, no extra forward.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from obliviate import ObliviateError
from obliviate.config import MAX_STEPS
from obliviate.data.format import IGNORE_INDEX, encode_qas, encode_text_chunks, pad_batch, pad_token_id
from obliviate.data.roles import disjoint_retain
from obliviate.models.device import to_device
from obliviate.models.logps import sequence_logps

VIEWS = ("forget", "retain", "alternate", "retain_alternate")


@dataclass
class UnlearnBatch:
    """One effective batch (or a micro-batch: `rows` of one, `trimmed`): each view padded to its own longest example
    (dynamic padding), or None when the recipe does not use it; `ref_logps[view]` (B,) the cached reference
    log-probs.

    >>> ex = lambda n: {"input_ids": [1] * n + [7, 2], "labels": [-100] * n + [7, 2]}
    >>> data = UnlearnData(forget=[ex(3), ex(1)], retain=[ex(2)], pad_id=0)
    >>> b = collate(data, BatchIndices(forget=[0, 1], retain=[0, 0]))
    >>> b.forget["input_ids"].tolist(), b.forget["labels"].tolist()
    ([[1, 1, 1, 7, 2], [1, 7, 2, 0, 0]], [[-100, -100, -100, 7, 2], [-100, 7, 2, -100, -100]])
    >>> b.retain["input_ids"].shape, b.alternate, b.ref_logps
    (torch.Size([2, 4]), None, {})
    >>> b.rows([1]).forget["input_ids"].tolist(), b.rows([1]).trimmed().forget["input_ids"].tolist()
    ([[1, 7, 2, 0, 0]], [[1, 7, 2]])
    """

    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor] | None = None
    alternate: dict[str, torch.Tensor] | None = None
    retain_alternate: dict[str, torch.Tensor] | None = None
    ref_logps: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device) -> UnlearnBatch:
        """Every tensor of the batch on `device` (the model's: inputs follow the model; a no-op on its device)."""
        return UnlearnBatch(**{f.name: to_device(getattr(self, f.name), device) for f in fields(self)})

    def __len__(self) -> int:
        return len(self.forget["input_ids"])

    def trimmed(self) -> UnlearnBatch:
        """Each view cut to its longest row (right padding: only padding columns go)."""
        def cut(v):
            return None if v is None else {k: t[:, :int(v["attention_mask"].sum(-1).max())] for k, t in v.items()}
        return UnlearnBatch(forget=cut(self.forget), retain=cut(self.retain), alternate=cut(self.alternate),
                            retain_alternate=cut(self.retain_alternate), ref_logps=self.ref_logps)

    def rows(self, idx: slice | list[int]) -> UnlearnBatch:
        """The micro-batch of rows `idx` of every view (same padded width: a slice of this batch's tensors)."""
        cut = lambda v: None if v is None else {k: t[idx] for k, t in v.items()}  # noqa: E731
        return UnlearnBatch(forget=cut(self.forget), retain=cut(self.retain), alternate=cut(self.alternate),
                            retain_alternate=cut(self.retain_alternate),
                            ref_logps={k: t[idx] for k, t in self.ref_logps.items()})


def micro_batches(batch: UnlearnBatch, micro_batch: int, *, rank: int = 0, world: int = 1,
                  keep_width: bool = False) -> list[UnlearnBatch]:
    """`batch` cut into micro-batches of `micro_batch` rows per process. Rows are taken in order of length (a sum
    over rows does not depend on their order), so each micro-batch is padded only to its own longest row
    (`keep_width`: to the batch's, for losses that count padding positions); with `world` processes each takes
    every world-th row of a micro-batch of `micro_batch × world` rows.

    >>> ex = lambda n: {"input_ids": [1] * n, "labels": [5] * n}
    >>> b = collate(UnlearnData(forget=[ex(5), ex(2), ex(4), ex(1)], pad_id=0), BatchIndices([0, 1, 2, 3]))
    >>> [m.forget["input_ids"].shape[1] for m in micro_batches(b, 2)], len(micro_batches(b, 2, keep_width=True))
    ([2, 5], 2)
    """
    views = [v for v in (batch.forget, batch.retain, batch.alternate, batch.retain_alternate) if v is not None]
    length = sum(v["attention_mask"].sum(-1) for v in views)
    order = sorted(range(len(batch)), key=lambda i: (int(length[i]), i))
    width = micro_batch * world
    parts = [batch.rows(order[k + rank:k + width:world]) for k in range(0, len(batch), width)]
    return parts if keep_width else [p.trimmed() for p in parts]


@dataclass
class UnlearnData:
    forget: list[dict]
    pad_id: int
    retain: list[dict] | None = None
    alternate: list[dict] | None = None
    retain_alternate: list[dict] | None = None
    ref_logps: dict[str, torch.Tensor] = field(default_factory=dict)  # view -> (N,) per example


@dataclass
class BatchIndices:
    forget: list[int]  # indices into the forget view (and alternate)
    retain: list[int] | None = None  # the paired retain indices (and retain_alternate)


def pick_refusal(refusals: list[str], index: int, seed: int, salt: str) -> str:
    """The refusal for item `index`: fixed per (seed, view, index)."""
    return refusals[random.Random(f"{seed}:{salt}:{index}").randrange(len(refusals))]


def record_format(records) -> str:
    """'text' when the records carry raw `text` and no question, else 'qa'."""
    return "text" if records and all("text" in r and "question" not in r for r in records) else "qa"


def _encode(tokenizer, records, fmt: str, max_length: int, what: str) -> list[dict]:
    if fmt == "text":
        return [c for r in records for c in encode_text_chunks(tokenizer, r["text"], max_length=max_length)]
    return encode_qas(tokenizer, [(r["question"], r["answer"]) for r in records], max_length=max_length, what=what)


def build_data(tokenizer, forget_records, retain_records, needs: set[str], *, refusals=None, seed=0,
               max_length=256, recipe: str = "") -> UnlearnData:
    """Tokenize only the views in `needs` (plus forget); QA records or raw text (chunked). The retain records
    share no item with the forget records (`data.roles.disjoint_retain`: an error, or a whole-set split minus the
    forget items with a warning)."""
    fmt_f = record_format(forget_records)
    fmt_r = record_format(retain_records) if retain_records else "qa"
    for view, fmt, name in (("alternate", fmt_f, "forget"), ("retain_alternate", fmt_r, "retain")):
        if view in needs and fmt == "text":
            raise ObliviateError(f"recipe {recipe or '?'} needs {name} questions to answer with a refusal; the {name} "
                                 "set is raw text: use ga, npo, simnpo, me or rmu (with gd/kl) on text")
    retain_records = disjoint_retain(forget_records, retain_records)
    data = UnlearnData(forget=_encode(tokenizer, forget_records, fmt_f, max_length, "forget items"),
                       pad_id=pad_token_id(tokenizer))
    if not data.forget:
        raise ObliviateError(f"the forget set ({len(forget_records)} records) has no text to train on")
    if "retain" in needs or "retain_alternate" in needs:
        data.retain = _encode(tokenizer, retain_records, fmt_r, max_length, "retain items")
    if "alternate" in needs:
        data.alternate = encode_qas(tokenizer, [(r["question"], pick_refusal(refusals, i, seed, "forget"))
                                                for i, r in enumerate(forget_records)],
                                    max_length=max_length, what="forget refusal items")
    if "retain_alternate" in needs:
        data.retain_alternate = encode_qas(tokenizer, [(r["question"], pick_refusal(refusals, i, seed, "retain"))
                                                       for i, r in enumerate(retain_records)],
                                           max_length=max_length, what="retain refusal items")
    return data


@torch.no_grad()
def example_logps(model, examples: list[dict], pad_id: int, *, batch_size: int = 32) -> torch.Tensor:
    """(N,) log π(y|x) summed over answer tokens of each example, batched by length (less padding), input order."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    sums = torch.zeros(len(examples))
    for k in range(0, len(order), batch_size):
        idx = order[k:k + batch_size]
        sums[idx] = sequence_logps(model, pad_batch([examples[i] for i in idx], pad_id)).sum().float().to(sums.device)
    return sums


def answer_lengths(examples: list[dict]) -> torch.Tensor:
    """(N,) answer tokens of each example that a next-token log-prob scores (labels after the first position)."""
    return torch.tensor([sum(1 for t in ex["labels"][1:] if t != IGNORE_INDEX) for ex in examples], dtype=torch.float32)


@torch.no_grad()
def cache_ref_logps(model, data: UnlearnData, views=("forget", "alternate"), *, batch_size: int = 32) -> None:
    """Store log π_ref(y|x) (summed over answer tokens) of every example of `views` in `data.ref_logps`."""
    was_training = model.training
    model.eval()
    for view in views:
        examples = getattr(data, view)
        if examples is None:
            continue
        data.ref_logps[view] = example_logps(model, examples, data.pad_id, batch_size=batch_size)
    model.train(was_training)


def plan(n_forget: int, n_retain: int | None, *, batch_size: int, batches: int, seed: int) -> list[BatchIndices]:
    """The first `batches` effective batches (one per optimiser step): each epoch a seeded permutation of the
    forget set in chunks of `batch_size`; forget item i in epoch e is paired with retain item rng(seed, e, i)
    (ForgetRetainDataset à la open-unlearning, made deterministic). Same arguments → same plan, so a resumed
    run replays it; the micro-batch split does not enter it."""
    if batches > MAX_STEPS:  # epochs × steps per epoch: refused before the plan is built, not after memory ran out
        raise ObliviateError(f"the run would take {batches} optimiser steps, over the cap of {MAX_STEPS} "
                             "(config.MAX_STEPS); lower epochs or set max_steps")
    out: list[BatchIndices] = []
    epoch = 0
    while len(out) < batches:
        perm = torch.randperm(n_forget, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
        for k in range(0, n_forget, batch_size):
            idx = perm[k:k + batch_size]
            pair = None if not n_retain else [int(np.random.default_rng([seed, epoch, i]).integers(n_retain))
                                              for i in idx]
            out.append(BatchIndices(idx, pair))
        epoch += 1
    return out[:batches]


def steps_per_epoch(n_forget: int, batch_size: int) -> int:
    return math.ceil(n_forget / batch_size)


def collate(data: UnlearnData, mb: BatchIndices) -> UnlearnBatch:
    def view(name, idx):
        examples = getattr(data, name)
        return None if examples is None or idx is None else pad_batch([examples[i] for i in idx], data.pad_id)

    ref = {v: data.ref_logps[v][mb.forget] for v in data.ref_logps}
    return UnlearnBatch(forget=view("forget", mb.forget), retain=view("retain", mb.retain),
                        alternate=view("alternate", mb.forget),
                        retain_alternate=view("retain_alternate", mb.retain), ref_logps=ref)
