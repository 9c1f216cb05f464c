"""Each record schema against a table of malformed records: one line naming the source, the record and the field."""

import json
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.data.benchmarks import BENCHMARKS, load_role
from obliviate.data.loading import load_split
from obliviate.data.schemas import (SCHEMAS, MCQRecord, PerturbedQARecord, PromptRecord, QARecord, RealworldRecord,
                                    TextRecord, check_records)

FIXTURES = Path(__file__).parents[1] / "fixtures"
QA = {"question": "Who wrote X?", "answer": "Ann Lee wrote X."}
PQA = {**QA, "paraphrased_answer": "X is by Ann Lee.", "perturbed_answer": ["Bo Li wrote X.", "Cy Ma wrote X."]}
RW = {"name": "Ann Lee", "question": "Where was Ann Lee born?", "answer": "Ann Lee was born in Oslo.",
      "golden_answer": "Oslo", "perturbed_answer": ["Rome", "Lima"]}
MCQ = {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1}

MALFORMED = [
    # (schema, record, expected message after "record 0: ")
    (QARecord, {"question": "q"}, "missing field 'answer'"),
    (QARecord, {**QA, "answer": ""}, "field 'answer' must be a non-empty string (got str '')"),
    (QARecord, {**QA, "answer": "   "}, "field 'answer' must be a non-empty string"),
    (QARecord, {**QA, "answer": 3}, "field 'answer' must be a string (got int 3)"),
    (QARecord, {**QA, "answer": ["a"]}, "field 'answer' must be a string (got list ['a'])"),
    (QARecord, {**QA, "question": None}, "field 'question' must be a string (got NoneType None)"),
    (QARecord, {**QA, "perturbed_answer": "crimson"}, "field 'perturbed_answer' must be a list of strings"),
    (QARecord, {**QA, "perturbed_answer": [1, 2]}, "field 'perturbed_answer[0]' must be a string (got int 1)"),
    (QARecord, {**QA, "perturbed_answer": ["ok", True]}, "field 'perturbed_answer[1]' must be a string (got bool True)"),
    (QARecord, {**QA, "perturbed_answer": []}, "field 'perturbed_answer' must be a non-empty list (got list [])"),
    (QARecord, {**QA, "perturbed_answer": ["ok", ""]}, "field 'perturbed_answer[1]' must be a non-empty string"),
    (QARecord, {**QA, "paraphrased_answer": 7}, "field 'paraphrased_answer' must be a string (got int 7)"),
    (QARecord, ["Who wrote X?", "Ann Lee"], "expected an object, got list"),
    (QARecord, "Who wrote X?", "expected an object, got str"),
    (PerturbedQARecord, QA, "missing field 'paraphrased_answer'"),
    (PerturbedQARecord, {**PQA, "perturbed_answer": "Bo Li wrote X."}, "field 'perturbed_answer' must be a list"),
    (PerturbedQARecord, {**PQA, "perturbed_answer": None}, "field 'perturbed_answer' must be a list"),
    (RealworldRecord, {**RW, "name": 5}, "field 'name' must be a string (got int 5)"),
    (RealworldRecord, {k: v for k, v in RW.items() if k != "name"}, "missing field 'name'"),
    (RealworldRecord, {**RW, "golden_answer": 1947}, "field 'golden_answer' must be a string (got int 1947)"),
    (RealworldRecord, {**RW, "perturbed_answer": "crimson"}, "field 'perturbed_answer' must be a list of strings"),
    (RealworldRecord, {**RW, "perturbed_answer": [1, 2]}, "field 'perturbed_answer[0]' must be a string (got int 1)"),
    (MCQRecord, {**MCQ, "answer": True}, "field 'answer' must be an integer index (got bool True)"),
    (MCQRecord, {**MCQ, "answer": "B"}, "field 'answer' must be an integer index (got str 'B')"),
    (MCQRecord, {**MCQ, "answer": 1.0}, "field 'answer' must be an integer index (got float 1.0)"),
    (MCQRecord, {**MCQ, "answer": 4}, "field 'answer': index 4 out of range for 4 choices"),
    (MCQRecord, {**MCQ, "answer": -1}, "field 'answer': index -1 out of range for 4 choices"),
    (MCQRecord, {**MCQ, "choices": "ABCD"}, "field 'choices' must be a list of strings"),
    (MCQRecord, {**MCQ, "choices": [3, 4, 5, 6]}, "field 'choices[0]' must be a string (got int 3)"),
    (MCQRecord, {**MCQ, "choices": ["4"], "answer": 0}, "field 'choices' must hold 2 to 26 choices, got 1"),
    (TextRecord, {"text": ["a", "b"]}, "field 'text' must be a string"),
    (TextRecord, {"text": ""}, "field 'text' must be a non-empty string"),
    (PromptRecord, {"prompt": "The city", "gt": 5}, "field 'gt' must be a string (got int 5)"),
    (PromptRecord, {"gt": "council"}, "missing field 'prompt'"),
]


@pytest.mark.parametrize("schema,record,message", MALFORMED,
                         ids=[f"{s.__name__}-{i}" for i, (s, _, _) in enumerate(MALFORMED)])
def test_malformed_record_is_one_line_naming_source_record_and_field(schema, record, message):
    good = {QARecord: QA, PerturbedQARecord: PQA, RealworldRecord: RW, MCQRecord: MCQ,
            TextRecord: {"text": "t"}, PromptRecord: {"prompt": "p", "gt": "g"}}[schema]
    assert check_records([good], schema, "user.json") == [good]
    with pytest.raises(ObliviateError) as e:
        check_records([good, record], schema, "user.json")
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith(f"user.json: record 1: {message}"), text


def test_valid_records_come_back_unchanged_with_extra_fields():
    recs = [{**PQA, "paraphrased_question": "Who is X's author?", "option1": "a", "id": 3},
            {**PQA, "perturbed_answer": ["one wrong answer, as a one-element list"]}]
    assert check_records(recs, PerturbedQARecord, "x") is recs
    assert check_records([{**MCQ, "subject": "math"}], MCQRecord, "x")[0]["subject"] == "math"
    with pytest.raises(ObliviateError, match="x: the split is empty"):
        check_records([], QARecord, "x")


def test_schemas_cover_every_benchmark_role_format():
    from obliviate.data.benchmarks import FORMAT_FIELDS, FORMATS

    assert set(FORMATS) <= set(SCHEMAS)
    assert FORMAT_FIELDS == {"qa": ("question", "answer"), "text": ("text",), "prompt": ("prompt", "gt"),
                             "mcq": ("question", "choices", "answer")}


@pytest.mark.parametrize("name", ["tofu", "muse-news", "muse-books", "wmdp", "rwku"])
def test_every_published_fixture_layout_still_loads(name):
    """The published schemas (TOFU lists of perturbed answers, WMDP int answers, MUSE raw text, RWKU renames)."""
    bench = BENCHMARKS[name]
    for role in bench.roles:
        assert load_role(bench, FIXTURES / name, role), role
    if name == "tofu":
        for split in ("forget01_perturbed", "world_facts_perturbed", "real_authors_perturbed", "full", "retain99"):
            assert load_split(FIXTURES / name, split), split


def test_mcq_file_with_a_bool_answer_names_file_record_and_field(tmp_path):
    (tmp_path / "wmdp-bio").mkdir()
    rows = [MCQ, {**MCQ, "answer": True}]
    (tmp_path / "wmdp-bio" / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ObliviateError, match=r"wmdp-bio/test\.jsonl: record 1: field 'answer' must be an integer "
                                             r"index \(got bool True\)"):
        load_role("wmdp", tmp_path, "wmdp_bio")


def test_mcq_eval_checks_records_before_any_forward_pass():
    from obliviate.evaluate.mcq import mcq_eval

    with pytest.raises(ObliviateError, match=r"MCQ items: record 0: field 'answer' must be an integer index \(got "
                                             r"bool False\)"):
        mcq_eval(None, None, [{**MCQ, "answer": False}])
