"""Declared schemas of every user-facing record type, checked with strict types (pydantic v2).

    check_records(records, QARecord, "data/forget10.json")        # raises one line on the first bad record
    SCHEMAS["mcq"]                                                 # the schema of a benchmark role's format

| schema              | read from                                              | fields (extra fields are kept)                |
|---------------------|--------------------------------------------------------|-----------------------------------------------|
| `QARecord`          | TOFU / world splits, MUSE KnowMem, RWKU probes, continual task files | question, answer; optional paraphrased_answer, perturbed_answer, paraphrased_question |
| `PerturbedQARecord` | TOFU `*_perturbed` splits (truth ratio)                | + paraphrased_answer, perturbed_answer (required) |
| `RealworldRecord`   | `realworld --forget-file/--neighbour-file/...`         | name, question, answer; optional golden_answer, paraphrased_answer, perturbed_answer |
| `MCQRecord`         | WMDP, MMLU                                             | question, choices (list of strings), answer (index) |
| `TextRecord`        | MUSE raw / privleak, WMDP corpora, RWKU target & MIA   | text                                          |
| `PromptRecord`      | MUSE VerbMem                                           | prompt, gt                                    |

Strict, as published (TOFU: perturbed_answer is a list of strings; WMDP/MMLU: answer is an int): a string
where a list is expected is an error (never split into letters), a bool is not an index, an integer is not an
answer. One perturbed answer is a one-element list. Validation only checks: the records are returned as read.

Why pydantic rather than dataclasses with validators: strict mode gives exactly these rules (no str→list, no
bool→int, no int→str coercion) for nested lists without hand-written isinstance chains, and each error
carries the field path (`perturbed_answer.2`), which the one-line message names.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from obliviate import ObliviateError

Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=False, pattern=r"\S")]
AnyText = str
Answers = Annotated[list[Text], Field(min_length=1)]  # perturbed answers: one is a one-element list


class Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class QARecord(Record):
    """A question/answer record (TOFU schema); the evaluation fields are type-checked when present."""

    question: Text
    answer: Text
    paraphrased_answer: AnyText | None = None
    perturbed_answer: Answers | None = None
    paraphrased_question: AnyText | None = None


class PerturbedQARecord(QARecord):
    """A truth-ratio record (TOFU `*_perturbed`): paraphrased and perturbed answers are required."""

    paraphrased_answer: Text
    perturbed_answer: Answers


class RealworldRecord(QARecord):
    """The real-world (Closer-Look) record: a QA record (the answer the model is trained on) with its subject
    `name` and the short `golden_answer` evaluation scores."""

    name: Text
    golden_answer: Text | None = None


class MCQRecord(Record):
    """A multiple-choice record (WMDP / MMLU): `answer` is the 0-based index of the right choice."""

    question: Text
    choices: list[str]
    answer: int

    @model_validator(mode="after")
    def _index(self):
        if not 2 <= len(self.choices) <= 26:
            raise ValueError(f"field 'choices' must hold 2 to 26 choices, got {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"field 'answer': index {self.answer} out of range for {len(self.choices)} choices")
        return self


class TextRecord(Record):
    """Raw text (MUSE raw, WMDP corpora, MIA texts)."""

    text: Text


class PromptRecord(Record):
    """A continuation prompt and its ground truth (MUSE VerbMem)."""

    prompt: Text
    gt: Text


SCHEMAS: dict[str, type[Record]] = {"qa": QARecord, "qa_perturbed": PerturbedQARecord, "realworld": RealworldRecord,
                                     "mcq": MCQRecord, "text": TextRecord, "prompt": PromptRecord}

_PLAIN = {"string_type": "must be a string", "list_type": "must be a list of strings",
          "int_type": "must be an integer index", "string_too_short": "must be a non-empty string",
          "string_pattern_mismatch": "must be a non-empty string", "too_short": "must be a non-empty list"}


def _got(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def describe(error: dict) -> str:
    """One pydantic error as `field 'x': must be ... (got <type> <value>)`."""
    loc = [str(p) for p in error["loc"]]
    field = loc[0] + "".join(f"[{p}]" for p in loc[1:]) if loc else ""
    if error["type"] == "missing":
        return f"missing field '{field}'"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
    plain = _PLAIN.get(error["type"], error["msg"].lower())
    if error["type"] == "list_type" and isinstance(error["input"], str):
        plain += ", not one string (a single item is a one-element list)"
    return f"field '{field}' {plain} (got {_got(error['input'])})"


def check_record(record, schema: type[Record]) -> str | None:
    """None when `record` fits `schema`, else what is wrong (one phrase)."""
    if not isinstance(record, dict):
        return f"expected an object, got {_got(record)}"
    try:
        schema.model_validate(record)
    except ValidationError as e:
        return describe(e.errors(include_url=False)[0])
    return None


def check_records(records: list, schema: type[Record], source: str) -> list[dict]:
    """`records` unchanged when every one fits `schema`; else one line naming `source`, the record and field."""
    if not records:
        raise ObliviateError(f"{source}: the split is empty")
    for i, rec in enumerate(records):
        problem = check_record(rec, schema)
        if problem:
            raise ObliviateError(f"{source}: record {i}: {problem}")
    return records
