"""Greedy generation with continuous batching: a finished row leaves the batch and a waiting prompt takes its slot.

    texts, token_ids = generate(model, tok, [encode_prompt(tok, q) for q in questions], max_new_tokens=200)

On a CPU a decoding step costs nearly the same for 16 or 64 rows (every weight is read once per step), so a
static batch, which runs until its longest row ends, spends most of its steps on rows that have already ended.
Here (`ContinuousBatch`) up to `batch_size` rows decode together; a row that emits EOS or reaches
`max_new_tokens` leaves the batch (`DynamicCache.batch_select_indices`), and once at least a quarter of the
slots are free (or the batch is empty, or every waiting prompt fits) the next waiting prompts, shortest first,
are prefilled together (left-padded) and join it: their KV cache is left-padded with zero keys/values
(attention mask 0) to the running one's length, or the running one to theirs, and the two are concatenated along
the batch; cache columns no row attends to any more are dropped. Position ids are transformers' own for
left-padded rows (prompt: attention_mask.cumsum − 1, masked positions 0; each new token: the last one + 1), so
`mask_pad_ids=True` (open-unlearning's attention mask `ids != pad id`, which also masks pad-id tokens inside a
prompt) decodes as `model.generate` does. Each step computes the last position's logits only and takes the
float32 argmax. Every row is thus generated as in a static batch of `model.generate`, up to float rounding of
the different batch shapes (`tests/evaluate/test_generate.py`).

The static path (transformers' `model.generate` over batches sorted by prompt length) remains for several
processes (`accelerate launch`: whole batches split, `distributed.map_batches`, bit-identical to one process),
models whose cache is not a plain `DynamicCache` (sliding-window, recurrent), a generation config that adds
logits processors (repetition penalty, ...), no EOS token, and the rows left when the loop runs out of memory.

Texts and token ids come back in input order. `token_ids` are the generated ids up to (not including)
EOS/padding: Token Entropy counts them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from obliviate.data.format import pad_batch, pad_token_id
from obliviate.evaluate.distributed import map_batches, process_state
from obliviate.evaluate.passes import _cache_kwarg, _plain_dynamic_cache
from obliviate.models.device import model_device, to_device

REFILL_FRACTION = 4  # refill when at least batch_size // REFILL_FRACTION slots are free: prefills stay batched
GREEDY_NEUTRAL = {  # generation-config fields that leave greedy decoding's argmax untouched
    "bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
    "_from_model_config", "use_cache", "output_attentions", "output_hidden_states", "output_scores",
    "output_logits", "return_dict_in_generate", "do_sample", "temperature", "top_p", "top_k", "min_p",
    "typical_p", "max_length", "max_new_tokens"}  # (a cache_implementation, e.g. "static", takes the static path)


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[list[int]], *, max_new_tokens: int = 200, batch_size: int = 64,
             stop: str | None = None, progress: bool = False, desc: str = "generate",
             mask_pad_ids: bool = False) -> tuple[list[str], list[list[int]]]:
    """Greedy continuations of token-id prompts. `stop`: cut the text at this string (KnowMem's blank line).
    `mask_pad_ids`: attention_mask = ids != pad id, as open-unlearning's collator (convention `attention_mask`).
    One process: continuous batching (`ContinuousBatch`); under `accelerate launch` whole static batches are
    split across the processes (`distributed.map_batches`)."""
    from obliviate.rundir import progress_bar

    pad_id, eos = pad_token_id(tokenizer), tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    bar = progress_bar(total=len(order), desc=desc, progress=progress)
    rows: list = [None] * len(prompts)

    def done(i: int, ids: list[int]) -> None:
        rows[i] = _finish(tokenizer, ids, eos, pad_id, stop)
        bar.update(1)

    left = order
    if continuous_ok(model, eos, max_new_tokens):
        left = continuous_generate(model, prompts, order, done, max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, pad_id=pad_id, eos=eos, mask_pad_ids=mask_pad_ids)
    if left:
        def run(idx: list[int]) -> list[tuple[str, list[int]]]:
            out = [_finish(tokenizer, r, eos, pad_id, stop) for r in
                   static_batch(model, [prompts[i] for i in idx], max_new_tokens=max_new_tokens, pad_id=pad_id,
                                eos=eos, mask_pad_ids=mask_pad_ids)]
            bar.update(len(idx))
            return out

        for i, row in enumerate(map_batches(run, left, batch_size, len(prompts))):  # halves a batch on OOM
            if row is not None:
                rows[i] = row
    bar.close()
    return [t for t, _ in rows], [ids for _, ids in rows]


def _finish(tokenizer, row: list[int], eos: int | None, pad_id: int, stop: str | None) -> tuple[str, list[int]]:
    """(text, ids) of one generated row: ids up to EOS (or padding, without an EOS token), the text decoded
    without special tokens, cut at `stop` (then the ids are the cut text's), stripped."""
    cut = next((j for j, t in enumerate(row) if t == eos or (t == pad_id and eos is None)), len(row))
    ids = row[:cut]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if stop and stop in text:
        text = text[: text.index(stop)]
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text.strip(), ids


def static_batch(model, prompts: list[list[int]], *, max_new_tokens: int, pad_id: int, eos: int | None,
                 mask_pad_ids: bool) -> list[list[int]]:
    """transformers' `model.generate` on one left-padded batch: the generated ids of each row (EOS and the
    padding after it included)."""
    batch = pad_batch([{"input_ids": list(p)} for p in prompts], pad_id, side="left")
    if mask_pad_ids:
        batch["attention_mask"] = batch["input_ids"].ne(pad_id).long()
    batch = to_device(batch, model)
    out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                         pad_token_id=pad_id, eos_token_id=eos, temperature=None, top_p=None, top_k=None)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def continuous_ok(model, eos: int | None, max_new_tokens: int) -> bool:
    """Whether the continuous loop decodes as `model.generate` would: one process, an EOS token, a forward that
    takes a KV cache and `logits_to_keep`, and a generation config without logits processors (whether the cache is a plain
    `DynamicCache` is known after the first prefill)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if eos is None or max_new_tokens < 1 or not callable(getattr(base, "forward", None)):
        return False  # (a stand-in with only `generate` too)
    if process_state().num_processes > 1 or _cache_kwarg(model) is None:
        return False
    if "logits_to_keep" not in inspect.signature(base.forward).parameters:
        return False
    config = getattr(model, "generation_config", None)
    changed = config.to_diff_dict() if config is not None else {}
    return set(changed) <= GREEDY_NEUTRAL


class NotPlainCache(Exception):
    """The model's cache cannot be cut and merged by rows (not a plain `DynamicCache`)."""


def continuous_generate(model, prompts: Sequence[list[int]], order: list[int],
                        done: Callable[[int, list[int]], None], *, max_new_tokens: int, batch_size: int,
                        pad_id: int, eos: int, mask_pad_ids: bool) -> list[int]:
    """Generate the prompts of `order` (taken in that order) by continuous batching, calling `done(i, ids)` as
    each row ends; return the indices left for the static path: all of them when the cache is not a plain
    `DynamicCache`, the unfinished ones when the device runs out of memory."""
    from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

    run = ContinuousBatch(model, max_new_tokens=max_new_tokens, pad_id=pad_id, eos=eos, mask_pad_ids=mask_pad_ids)
    waiting = list(order)
    finished: set[int] = set()

    def end(i: int, ids: list[int]) -> None:
        finished.add(i)
        done(i, ids)

    oom = False
    try:
        while waiting or run.rows:
            free = batch_size - len(run.rows)
            if waiting and free >= min(max(1, batch_size // REFILL_FRACTION), len(waiting)):
                take, waiting = waiting[:free], waiting[free:]
                run.admit(take, [prompts[i] for i in take], end)
            else:
                run.step(end)
    except NotPlainCache:  # raised by the first prefill: nothing has finished
        pass
    except Exception as e:
        if not should_reduce_batch_size(e):
            raise
        oom = True
    if oom:  # the rows in flight start again in the static path, which halves its batches on out-of-memory
        run = None
        clear_device_cache(garbage_collection=True)
    return [i for i in order if i not in finished]


class ContinuousBatch:
    """The rows decoding together: their prompt indices, generated ids, KV cache (B,H,L,D per layer), attention
    mask over the cache columns (B,L), the position id of each row's last token (B,) and its next input (B,)."""

    def __init__(self, model, *, max_new_tokens: int, pad_id: int, eos: int, mask_pad_ids: bool):
        self.model, self.max_new_tokens, self.pad_id, self.eos = model, max_new_tokens, pad_id, eos
        self.mask_pad_ids, self.kwarg, self.dev = mask_pad_ids, _cache_kwarg(model), model_device(model)
        self.rows: list[int] = []
        self.gen: list[list[int]] = []
        self.cache = self.mask = self.pos = self.next = None
        self.prefills = 0  # prefill calls (each admits a group of waiting prompts)

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache):
        """The greedy next token of each row (B,) and the cache, from the last position's float32 logits."""
        extra = {self.kwarg: cache} if cache is not None else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **extra)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if not _plain_dynamic_cache(cache):
            raise NotPlainCache
        return out.logits[:, -1].float().argmax(-1), cache

    def _take(self, rows: list[int], gen: list[list[int]], tokens: torch.Tensor, end) -> list[int]:
        """Append each row's new token; rows that emitted EOS or reached max_new_tokens end (`end(i, ids)`).
        Returns the positions of the rows that go on."""
        keep = []
        for j, t in enumerate(tokens.tolist()):
            if t != self.eos:
                gen[j].append(t)
            if t == self.eos or len(gen[j]) >= self.max_new_tokens:
                end(rows[j], gen[j])
            else:
                keep.append(j)
        return keep

    def admit(self, idx: list[int], prompts: list[list[int]], end) -> None:
        """Prefill `prompts` (left-padded, one forward) and add the rows that go on to the batch."""
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.dev)
        if self.mask_pad_ids:
            mask = ids.ne(self.pad_id).long()
        else:
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.dev)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        tokens, cache = self._forward(ids, mask, pos, None)
        self.prefills += 1
        gen: list[list[int]] = [[] for _ in idx]
        keep = self._take(idx, gen, tokens, end)
        if not keep:
            return
        sel = torch.tensor(keep, device=self.dev)
        cache.batch_select_indices(sel)
        new = ([idx[j] for j in keep], [gen[j] for j in keep], cache, mask[sel], pos[sel, -1], tokens[sel])
        if not self.rows:
            self.rows, self.gen, self.cache, self.mask, self.pos, self.next = new
        else:
            self._merge(*new)
        self._trim()

    def _merge(self, rows, gen, cache, mask, pos, tokens) -> None:
        """Append rows to the batch: the shorter cache (and mask) left-padded with zeros, then concatenated."""
        width = max(self.mask.shape[1], mask.shape[1])
        left = lambda t, dim: torch.nn.functional.pad(t, [0, 0] * dim + [width - t.shape[-1 - dim], 0])  # noqa: E731
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([left(mine.keys, 1), left(theirs.keys, 1)])
            mine.values = torch.cat([left(mine.values, 1), left(theirs.values, 1)])
        self.mask = torch.cat([left(self.mask, 0), left(mask, 0)])
        self.rows, self.gen = self.rows + rows, self.gen + gen
        self.pos, self.next = torch.cat([self.pos, pos]), torch.cat([self.next, tokens])

    def _trim(self) -> None:
        """Drop the leading cache columns no row attends to (their rows have left the batch)."""
        first = int(self.mask.any(0).long().argmax())
        if first > 0:
            self.mask = self.mask[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]

    def step(self, end) -> None:
        """One decoding step of every row; the rows that end leave the batch."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], -1)
        self.pos = self.pos + 1
        tokens, self.cache = self._forward(self.next[:, None], self.mask, self.pos[:, None], self.cache)
        keep = self._take(self.rows, self.gen, tokens, end)
        if len(keep) < len(self.rows):
            sel = torch.tensor(keep, device=self.dev, dtype=torch.long)
            self.cache.batch_select_indices(sel)
            self.rows, self.gen = [self.rows[j] for j in keep], [self.gen[j] for j in keep]
            self.mask, self.pos, tokens = self.mask[sel], self.pos[sel], tokens[sel]
            if self.rows:
                self._trim()
        self.next = tokens
