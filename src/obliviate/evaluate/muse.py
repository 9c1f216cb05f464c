"""MUSE-style memorisation metrics (Shi et al., arXiv:2407.06460) on any split in MUSE's schema.

    verbmem_eval(model, tok, records)        # records: prompt, gt   (MUSE verbmem/forget)
    knowmem_eval(model, tok, qa, icl)        # qa/icl: question, answer (MUSE knowmem forget_qa(_icl))

VerbMem: greedy 128 tokens continuing the raw `prompt`; ROUGE-L F1 against the first 128 tokens of `gt`, ×100.
KnowMem: few-shot prompt "Question: q\\nAnswer: a\\n\\n" × len(icl) + "Question: q\\nAnswer:", greedy 32 tokens
cut at the first blank line, ROUGE-L F1 against the answer, ×100. No chat template: MUSE uses raw text.

Conventions (`obliviate.parity`; MUSE's code: swj0419/muse_bench `eval.py` and its `metrics/*.py`, read in the fork
Wenwen555/contrastive-npo at fbfeab7): `muse_bos` (MUSE and open-unlearning let the tokenizer add its BOS; we always
add one), `verbmem_reference` (open-unlearning scores against the whole `gt`), `knowmem_stop` (MUSE and
open-unlearning also cut at "\\nQuestion" / "Question:").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from obliviate import ObliviateError
from obliviate.data.format import with_bos
from obliviate.evaluate.generate import generate
from obliviate.evaluate.metrics import rouge_l_f1


MUSE_STOPS = ("\n\n", "\nQuestion", "Question:")  # MUSE metrics/knowmem.py:49; OU forget_knowmem_ROUGE.yaml:23


def _ids(tokenizer, text: str, bos: str = "always") -> list[int]:
    """Prompt ids: one BOS always (`with_bos`), or what `tokenizer(text)` adds ("tokenizer-default", MUSE / OU)."""
    if bos == "tokenizer-default":
        return tokenizer(text)["input_ids"]
    return with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])


def verbmem_reference(tokenizer, gt: str, max_new_tokens: int, reference: str = "first-tokens") -> str:
    """The text VerbMem compares with: the first `max_new_tokens` tokens of `gt` decoded (MUSE), or the whole
    `gt` decoded and stripped ("full-text": OU's decoded labels, src/evals/metrics/utils.py:271-281)."""
    ids = tokenizer(gt, add_special_tokens=False)["input_ids"]
    if reference == "full-text":
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
    return tokenizer.decode(ids[:max_new_tokens], skip_special_tokens=True)


def cut_at(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first occurrence of each stop in turn (MUSE's `get_prefix_before_words_occur`)."""
    for word in stops:
        text = text.split(word)[0]
    return text


def verbmem_eval(model, tokenizer, records: Sequence[dict], *, max_new_tokens: int = 128, batch_size: int = 8,
                 progress: bool = False, bos: str = "always", reference: str = "first-tokens") -> dict:
    for i, r in enumerate(records):
        if not isinstance(r.get("prompt"), str) or not isinstance(r.get("gt"), str):
            raise ObliviateError(f"VerbMem record {i}: needs string fields 'prompt' and 'gt'")
    gens, _ = generate(model, tokenizer, [_ids(tokenizer, r["prompt"], bos) for r in records],
                       max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, desc="verbmem")
    items = []
    for r, g in zip(records, gens):
        gt = verbmem_reference(tokenizer, r["gt"], max_new_tokens, reference)
        items.append({"prompt": r["prompt"], "gt": gt, "generation": g, "rouge_l_f1": 100 * rouge_l_f1(g, gt)})
    return {"items": items, "verbmem": float(np.mean([i["rouge_l_f1"] for i in items]))}


def knowmem_prompt(question: str, icl: Sequence[dict]) -> str:
    shots = "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in icl)
    return f"{shots}Question: {question}\nAnswer:"


def knowmem_eval(model, tokenizer, qa: Sequence[dict], icl: Sequence[dict] = (), *, max_new_tokens: int = 32,
                 batch_size: int = 8, progress: bool = False, bos: str = "always", stop: str = "blank-line") -> dict:
    """stop: "blank-line" (cut at the first blank line) | "muse-stops" (also at "\\nQuestion" / "Question:")."""
    prompts = [_ids(tokenizer, knowmem_prompt(r["question"], icl), bos) for r in qa]
    gens, _ = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       stop="\n\n", progress=progress, desc="knowmem")
    if stop == "muse-stops":
        gens = [cut_at(g, MUSE_STOPS).strip() for g in gens]
    items = [{"question": r["question"], "answer": r["answer"], "generation": g,
              "rouge_l_f1": 100 * rouge_l_f1(g, r["answer"])} for r, g in zip(qa, gens)]
    return {"items": items, "knowmem": float(np.mean([i["rouge_l_f1"] for i in items]))}
