"""Batched greedy generation: left padding, KV cache, stop at EOS.

    texts, token_ids = generate(model, tok, [encode_prompt(tok, q) for q in questions], max_new_tokens=200)

Prompts are sorted by length before batching (less padding) and returned in input order.
Greedy decoding is deterministic on CPU. `token_ids` are the generated ids up to (not including)
EOS/padding: Token Entropy counts them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from obliviate.data.format import pad_batch, pad_token_id
from obliviate.evaluate.distributed import map_batches
from obliviate.models.device import to_device


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[list[int]], *, max_new_tokens: int = 200, batch_size: int = 64,
             stop: str | None = None, progress: bool = False, desc: str = "generate",
             mask_pad_ids: bool = False) -> tuple[list[str], list[list[int]]]:
    """Greedy continuations of token-id prompts. `stop`: cut the text at this string (KnowMem's blank line).
    `mask_pad_ids`: attention_mask = ids != pad id, as open-unlearning's collator (convention `attention_mask`).
    Under `accelerate launch` whole batches are split across the processes (`distributed.map_batches`)."""
    from obliviate.rundir import progress_bar

    pad_id = pad_token_id(tokenizer)
    eos = tokenizer.eos_token_id
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    bar = progress_bar(total=len(order), desc=desc, progress=progress)

    def run(idx: list[int]) -> list[tuple[str, list[int]]]:
        batch = pad_batch([{"input_ids": list(prompts[i])} for i in idx], pad_id, side="left")
        if mask_pad_ids:
            batch["attention_mask"] = batch["input_ids"].ne(pad_id).long()
        batch = to_device(batch, model)
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                             pad_token_id=pad_id, eos_token_id=eos, temperature=None, top_p=None, top_k=None)
        rows = []
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            cut = next((j for j, t in enumerate(row) if t == eos or (t == pad_id and eos is None)), len(row))
            ids = row[:cut]
            text = tokenizer.decode(ids, skip_special_tokens=True)
            if stop and stop in text:
                text = text[: text.index(stop)]
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            rows.append((text.strip(), ids))
        bar.update(len(idx))
        return rows

    rows = map_batches(run, order, batch_size, len(prompts))  # halves a batch on out-of-memory
    bar.close()
    return [t for t, _ in rows], [ids for _, ids in rows]
