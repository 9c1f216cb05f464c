import json

import pytest

from obliviate import ObliviateError
from obliviate.data.loading import load_refusals, load_split


def test_world_splits_load_and_join(world_dir):
    full = load_split(world_dir, "full")
    wf = load_split(world_dir, "world_facts")
    assert load_split(world_dir, "full+world_facts") == full + wf
    assert len(load_refusals(world_dir)) == 100


def test_missing_field_names_file_record_and_field(tmp_path):
    f = tmp_path / "qa.json"
    f.write_text(json.dumps([{"question": "q", "answer": "a"}, {"question": "q2"}]))
    with pytest.raises(ObliviateError, match=r"qa\.json: record 1: missing field 'answer'"):
        load_split(f)


def test_perturbed_split_needs_eval_fields(tmp_path):
    (tmp_path / "forget_perturbed.json").write_text(json.dumps([{"question": "q", "answer": "a",
                                                                  "paraphrased_answer": "p"}]))
    with pytest.raises(ObliviateError, match="record 0: missing field 'perturbed_answer'"):
        load_split(tmp_path, "forget_perturbed")


def test_empty_unreadable_and_missing_splits(tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ObliviateError, match="empty.json: the split is empty"):
        load_split(tmp_path, "empty")
    (tmp_path / "bad.json").write_text("[{oops")
    with pytest.raises(ObliviateError, match="bad.json: line 1 column 3: not valid JSON"):
        load_split(tmp_path, "bad")
    (tmp_path / "lines.jsonl").write_text('{"question": "q", "answer": "a"}\nnot json\n')
    with pytest.raises(ObliviateError, match="lines.jsonl: line 2 column 1: not valid JSON"):
        load_split(tmp_path, "lines")
    with pytest.raises(ObliviateError, match="no split 'forget10'"):
        load_split(tmp_path, "forget10")
    with pytest.raises(ObliviateError, match="no such file or directory"):
        load_split(tmp_path / "nope.json")


def test_jsonl_and_wrong_types(tmp_path):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "q", "answer": "a"}\n\n{"question": "r", "answer": "b"}\n')
    assert [r["answer"] for r in load_split(f)] == ["a", "b"]
    g = tmp_path / "x.json"
    g.write_text(json.dumps([{"question": "q", "answer": 3}]))
    with pytest.raises(ObliviateError, match=r"record 0: field 'answer' must be a string \(got int 3\)"):
        load_split(g)
