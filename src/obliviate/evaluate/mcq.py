"""Multiple-choice accuracy by answer-letter log-likelihood (WMDP / MMLU format).

    result = mcq_eval(model, tok, records)   # records: question, choices (list), answer (int index)
    result["accuracy"], result["items"][0]["letter_logps"]

Prompt (lm-evaluation-harness's WMDP/MMLU format, no chat template):
``{question}\\nA. {c0}\\nB. {c1}\\nC. {c2}\\nD. {c3}\\nAnswer:``; the prediction is the argmax over
letters of log p(" A" | prompt), ... — one forward pass per item, batched with left padding so the
next-token logits sit at the last position. Chance is 1/len(choices) (25 % for WMDP/MMLU).

Two conventions (`obliviate.parity`, `mcq_description` / `mcq_bos`) differ from lm-evaluation-harness's task, which
open-unlearning runs for WMDP: lm-eval puts the task's description ("The following are multiple choice questions
(with answers) about biology.\n\n") before the prompt and lets the tokenizer decide on BOS (GPT-2-style
tokenizers such as SmolLM2's add none); `paper` uses the bare prompt and always one BOS. Under
``parity=open-unlearning`` both follow lm-eval, and the letter log-likelihoods equal lm-eval's (tests/evaluate/
test_harness.py).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch

from obliviate import ObliviateError
from obliviate.data.format import pad_batch, pad_token_id, with_bos
from obliviate.data.schemas import MCQRecord, check_records
from obliviate.evaluate.distributed import split_map
from obliviate.evaluate.metrics import mcq_accuracy
from obliviate.models.device import to_device

LETTERS = string.ascii_uppercase
# lm-eval's `description` subject of each WMDP task (lm_eval/tasks/wmdp/wmdp_{bio,chem,cyber}.yaml:4); MMLU's is the
# record's `subject` with spaces (lm_eval/tasks/mmlu/default/mmlu_<subject>.yaml:2)
WMDP_SUBJECTS = {"wmdp_bio": "biology", "wmdp_chem": "chemistry", "wmdp_cyber": "cybersecurity"}


def lm_eval_description(role: str, record: dict) -> str:
    """lm-eval's task description for an item of `role` ("" when its subject is not known)."""
    subject = WMDP_SUBJECTS.get(role) or str(record.get("subject") or "").replace("_", " ")
    return f"The following are multiple choice questions (with answers) about {subject}.\n\n" if subject else ""


def mcq_prompt(question: str, choices: Sequence[str]) -> str:
    lines = [question.strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


def letter_token_ids(tokenizer, n: int) -> list[int]:
    """The first token of " A", " B", ... (the answer letter after "Answer:")."""
    ids = []
    for letter in LETTERS[:n]:
        toks = tokenizer(f" {letter}", add_special_tokens=False)["input_ids"]
        if not toks:
            raise ObliviateError(f"tokenizer has no token for answer letter {letter!r}")
        ids.append(toks[0])
    if len(set(ids)) != n:
        raise ObliviateError("tokenizer maps different answer letters to the same first token")
    return ids


def mcq_eval(model, tokenizer, records: Sequence[dict], *, batch_size: int = 16, role: str = "",
             description: str = "none", bos: str = "always") -> dict:
    """Per-item letter log-likelihoods, prediction and correctness; `accuracy` and `chance` over the split.

    description: "none" | "lm-eval" (`lm_eval_description(role, record)` before each prompt); bos: "always" (one
    BOS, `with_bos`) | "tokenizer-default" (what `tokenizer(text)` adds, as lm-eval's HFLM). Records are checked
    against `MCQRecord` first (an int index in range, not a bool; a list of string choices). Under `accelerate
    launch` whole batches are split across the processes (`distributed.split_map`)."""
    check_records(list(records), MCQRecord, "MCQ items")
    chunks = [list(range(s, min(s + batch_size, len(records)))) for s in range(0, len(records), batch_size)]
    items = [it for part in split_map(lambda cs: [_mcq_items(model, tokenizer, [records[i] for i in c], role=role,
                                                             description=description, bos=bos)
                                                  for c in cs], chunks) for it in part]
    return {"items": items, "accuracy": mcq_accuracy([i["prediction"] for i in items], [i["answer"] for i in items]),
            "chance": float(sum(1 / len(r["choices"]) for r in records) / len(records))}


@torch.inference_mode()
def _mcq_items(model, tokenizer, chunk: Sequence[dict], *, role: str = "", description: str = "none",
               bos: str = "always") -> list[dict]:
    """One batch of MCQ items (under `accelerate launch`, whole batches are split across the processes)."""
    items = []
    pad_id = pad_token_id(tokenizer)
    prompts = []
    for r in chunk:
        text = (lm_eval_description(role, r) if description == "lm-eval" else "") + \
            mcq_prompt(r["question"], r["choices"])
        ids = tokenizer(text)["input_ids"] if bos == "tokenizer-default" else \
            with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
        prompts.append({"input_ids": ids})
    batch = to_device(pad_batch(prompts, pad_id, side="left"), model)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, -1]
    logps = torch.log_softmax(logits.float(), dim=-1)
    for r, row in zip(chunk, logps):
        letters = letter_token_ids(tokenizer, len(r["choices"]))
        scores = [float(row[t]) for t in letters]
        pred = max(range(len(scores)), key=scores.__getitem__)
        items.append({"question": r["question"], "answer": r["answer"], "letter_logps": scores,
                      "prediction": pred, "correct": pred == r["answer"]})
    return items
