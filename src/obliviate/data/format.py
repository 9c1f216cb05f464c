"""Prompt formatting, answer-only tokenization and dynamic padding.

    ex = encode_qa(tokenizer, "Who wrote X?", "Ann Lee wrote X.")
    batch = pad_batch([ex, ...], tokenizer.pad_token_id)   # right padding for training
    batch["labels"]  # -100 on prompt and padding: they carry no loss

The prompt goes through the tokenizer's chat template when it has one, else
`Question: {q}\\nAnswer:` followed by ` {a}` and the EOS token. Prompt and answer are
tokenized separately and concatenated, so the loss mask boundary is exact.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence

import torch

IGNORE_INDEX = -100


def records_hash(records: list[dict] | None) -> str | None:
    """A short hash of a split's records (None for none): keys evaluation's cache and refuses to resume an
    unlearning run on other forget/retain data."""
    if records is None:
        return None
    return hashlib.sha256(json.dumps(records, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_hash(tokenizer) -> str:
    """A short hash of what tokenization depends on (vocabulary, special tokens, chat template): a resumed run must
    tokenize as the interrupted one did."""
    spec = {"vocab": tokenizer.get_vocab(), "special": [tokenizer.bos_token_id, tokenizer.eos_token_id,
                                                         tokenizer.pad_token_id],
            "template": getattr(tokenizer, "chat_template", None)}
    return records_hash([spec])


def format_prompt(tokenizer, question: str) -> str:
    """The text the model sees before the answer."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Question: {question}\nAnswer:"


def format_answer(tokenizer, answer: str) -> str:
    return answer if getattr(tokenizer, "chat_template", None) else f" {answer}"


def with_bos(tokenizer, ids: list[int]) -> list[int]:
    """`ids` with the tokenizer's BOS in front (once; nothing when it has none): the one BOS rule."""
    bos = tokenizer.bos_token_id
    return [bos] + ids if bos is not None and (not ids or ids[0] != bos) else ids


def pad_token_id(tokenizer) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS (masked out either way), else 0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return tid
    return 0


def encode_prompt(tokenizer, question: str) -> list[int]:
    ids = tokenizer(format_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    return ids if getattr(tokenizer, "chat_template", None) else with_bos(tokenizer, ids)  # a template has its own


def encode_qa(tokenizer, question: str, answer: str, *, max_length: int = 256) -> dict[str, list[int]]:
    """`input_ids` = prompt + answer + EOS; `labels` = -100 on the prompt, the answer ids and EOS elsewhere.

    An example longer than `max_length` is cut the benchmark's way (`fit_qa`): the question loses its start, the
    answer is kept (or as much of its start as fits). `encode_qas` also counts and reports the cut ones.
    """
    return _encode_qa(tokenizer, question, answer, max_length)[0]


def _encode_qa(tokenizer, question: str, answer: str, max_length: int) -> tuple[dict[str, list[int]], bool]:
    """(example, whether it was cut)."""
    prompt = encode_prompt(tokenizer, question)
    ans = tokenizer(format_answer(tokenizer, answer), add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ans = ans + [tokenizer.eos_token_id]
    cut = len(prompt) + len(ans) > max_length
    if cut:
        prompt, ans = fit_qa(tokenizer, question, ans, max_length)
    return {"input_ids": prompt + ans, "labels": [IGNORE_INDEX] * len(prompt) + ans}, cut


def fit_qa(tokenizer, question: str, answer_ids: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of at most `max_length` tokens together, for a QA pair that does not fit.

    The answer keeps its first `max_length - (template + 1)` tokens at most (it is what the loss and the
    metrics read); the question is left-truncated (its last tokens kept, inside the same chat template) to fill
    the rest, as `truncation_side="left"` does. When the template alone leaves no room, the prompt ids themselves
    are left-truncated.
    """
    ans = answer_ids[: max(1, max_length - len(encode_prompt(tokenizer, "")) - 1)]
    return fit_prompt(tokenizer, question, max_length - len(ans))[0], ans


def fit_prompt(tokenizer, question: str, budget: int) -> tuple[list[int], bool]:
    """(the prompt ids of `question` left-truncated to at most `budget` tokens, its last tokens kept inside the
    chat template; whether it was cut)."""
    prompt = encode_prompt(tokenizer, question)
    if len(prompt) <= budget:
        return prompt, False
    empty = encode_prompt(tokenizer, "")
    q_ids = tokenizer(question, add_special_tokens=False)["input_ids"]
    keep = min(len(q_ids), max(0, budget - len(empty)))
    while keep > 0:
        prompt = encode_prompt(tokenizer, tokenizer.decode(q_ids[len(q_ids) - keep:]))
        if len(prompt) <= budget:
            return prompt, True
        keep -= len(prompt) - budget  # re-tokenised text can merge or split at the cut: shrink and retry
    return (empty[len(empty) - budget:] if len(empty) > budget else empty), True


def encode_prompts(tokenizer, questions: Sequence[str], *, max_length: int, what: str = "prompts") -> list[list[int]]:
    """`encode_prompt` of each question, left-truncated to `max_length` tokens (one warning line counts them)."""
    fitted = [fit_prompt(tokenizer, q, max_length) for q in questions]
    out, cut = [p for p, _ in fitted], sum(c for _, c in fitted)
    if cut:
        warnings.warn(f"{cut} of {len(out)} {what} are longer than max_length={max_length} tokens: their questions "
                      "were left-truncated", stacklevel=2)
    return out


def encode_qas(tokenizer, pairs: Sequence[tuple[str, str]], *, max_length: int, what: str = "items"
               ) -> list[dict[str, list[int]]]:
    """`encode_qa` of each (question, answer) pair; one warning line says how many were cut to `max_length`."""
    out, cut = [], 0
    for q, a in pairs:
        ex, was_cut = _encode_qa(tokenizer, q, a, max_length)
        out.append(ex)
        cut += was_cut
    if cut:
        warnings.warn(f"{cut} of {len(out)} {what} are longer than max_length={max_length} tokens: their questions "
                      "were left-truncated (answers kept)", stacklevel=2)
    return out


def encode_text_chunks(tokenizer, text: str, *, max_length: int = 256) -> list[dict[str, list[int]]]:
    """Raw text (MUSE raw, WMDP corpora) as pre-training examples: BOS + tokens, cut into chunks of
    `max_length` tokens; every token is a label (no chat template, no prompt). A last chunk of one token
    (nothing to predict) is dropped.

    >>> class T:  # a toy tokenizer: one id per character
    ...     bos_token_id = 1
    ...     def __call__(self, text, add_special_tokens=False): return {"input_ids": [ord(c) for c in text]}
    >>> [c["input_ids"] for c in encode_text_chunks(T(), "abcde", max_length=4)]
    [[1, 97, 98, 99], [100, 101]]
    """
    ids = with_bos(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"])
    chunks = [ids[i:i + max_length] for i in range(0, len(ids), max_length)]
    return [{"input_ids": c, "labels": list(c)} for c in chunks if len(c) > 1]


def pad_batch(features: Sequence[dict[str, list[int]]], pad_id: int, *, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest example: input_ids (B,T), attention_mask (B,T), labels (B,T) if present."""
    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list] = {"input_ids": [], "attention_mask": []}
    has_labels = "labels" in features[0]
    if has_labels:
        out["labels"] = []
    for f in features:
        n = width - len(f["input_ids"])
        pad = lambda seq, v: ([v] * n + list(seq)) if side == "left" else (list(seq) + [v] * n)  # noqa: E731
        out["input_ids"].append(pad(f["input_ids"], pad_id))
        out["attention_mask"].append(pad([1] * len(f["input_ids"]), 0))
        if has_labels:
            out["labels"].append(pad(f["labels"], IGNORE_INDEX))
    return {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}


class QADataset(torch.utils.data.Dataset):
    """Tokenized QA records (answer-only labels); `answer_field` picks which answer to train on."""

    def __init__(self, records: Sequence[dict], tokenizer, *, answer_field: str = "answer", max_length: int = 256):
        self.records = list(records)
        self.examples = encode_qas(tokenizer, [(r["question"], r[answer_field]) for r in self.records],
                                   max_length=max_length, what="training items")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


class Collator:
    """DataLoader collate_fn: dynamic right padding."""

    def __init__(self, pad_id: int, side: str = "right"):
        self.pad_id, self.side = pad_id, side

    def __call__(self, features):
        return pad_batch(features, self.pad_id, side=self.side)
