"""MUSE-style memorisation metrics (Shi et al., arXiv:2407.06460) on any split in MUSE's schema.

    verbmem_eval(model, tok, records)        # records: prompt, gt   (MUSE verbmem/forget)
    knowmem_eval(model, tok, qa, icl)        # qa/icl: question, answer (MUSE knowmem forget_qa(_icl))

VerbMem: greedy 128 tokens continuing the raw `prompt`; ROUGE-L F1 against the first 128 tokens of `gt`, ×100.
KnowMem: few-shot prompt "Question: q\\nAnswer: a\\n\\n" × len(icl) + "Question: q\\nAnswer:", greedy 32 tokens
cut at the first blank line, ROUGE-L F1 against the answer, ×100. No chat template: MUSE uses raw text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from obliviate import ObliviateError
from obliviate.data.format import with_bos
from obliviate.evaluate.generate import generate
from obliviate.evaluate.metrics import rouge_l_f1


def _ids(tokenizer, text: str) -> list[int]:
    return with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])


def verbmem_eval(model, tokenizer, records: Sequence[dict], *, max_new_tokens: int = 128, batch_size: int = 8,
                 progress: bool = False) -> dict:
    for i, r in enumerate(records):
        if not isinstance(r.get("prompt"), str) or not isinstance(r.get("gt"), str):
            raise ObliviateError(f"VerbMem record {i}: needs string fields 'prompt' and 'gt'")
    gens, _ = generate(model, tokenizer, [_ids(tokenizer, r["prompt"]) for r in records],
                       max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress, desc="verbmem")
    items = []
    for r, g in zip(records, gens):
        gt = tokenizer.decode(tokenizer(r["gt"], add_special_tokens=False)["input_ids"][:max_new_tokens],
                              skip_special_tokens=True)
        items.append({"prompt": r["prompt"], "gt": gt, "generation": g, "rouge_l_f1": 100 * rouge_l_f1(g, gt)})
    return {"items": items, "verbmem": float(np.mean([i["rouge_l_f1"] for i in items]))}


def knowmem_prompt(question: str, icl: Sequence[dict]) -> str:
    shots = "".join(f"Question: {e['question']}\nAnswer: {e['answer']}\n\n" for e in icl)
    return f"{shots}Question: {question}\nAnswer:"


def knowmem_eval(model, tokenizer, qa: Sequence[dict], icl: Sequence[dict] = (), *, max_new_tokens: int = 32,
                 batch_size: int = 8, progress: bool = False) -> dict:
    prompts = [_ids(tokenizer, knowmem_prompt(r["question"], icl)) for r in qa]
    gens, _ = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       stop="\n\n", progress=progress, desc="knowmem")
    items = [{"question": r["question"], "answer": r["answer"], "generation": g,
              "rouge_l_f1": 100 * rouge_l_f1(g, r["answer"])} for r, g in zip(qa, gens)]
    return {"items": items, "knowmem": float(np.mean([i["rouge_l_f1"] for i in items]))}
