"""Issue 28, the reader's defects (3: tracebacks on corrupt JSON; 5: record types; 8: UTF-16): each test uses only
APIs that predate the fix, so it runs (and fails) on the old code too."""

import json
from argparse import Namespace
from types import SimpleNamespace

import pytest

from obliviate import ObliviateError

BROKEN = '{"config": {"recipes": ["ga+gd"]}, "seeds": [0, '  # truncated mid-write


def _one_line(exc_info, *parts):
    text = str(exc_info.value)
    assert "\n" not in text and all(p in text for p in parts), text


# ------------------------------------------------------------------ defect 3: corrupt JSON we or the user wrote
def test_steal_target_with_a_broken_model_json_is_one_line(tmp_path):
    from obliviate.classifier.commands.common import target_dataset

    (tmp_path / "model.json").write_text('{"arch": "mlp", "meta": {"dataset": ')
    with pytest.raises(ObliviateError) as e:
        target_dataset(Namespace(train_target=None, dataset=None, target=str(tmp_path)))
    _one_line(e, str(tmp_path / "model.json"), "line 1 column", "not valid JSON")


@pytest.mark.parametrize("content,message", [('{"arch": "mlp", "kwargs": {', "not valid JSON"),
                                             ('["mlp"]', "expected a JSON object, got list"),
                                             ('{"kwargs": {}}', "expected {\"arch\": <name>")])
def test_loading_a_target_with_a_broken_model_json_is_one_line(tmp_path, content, message):
    from obliviate.classifier.models import load_classifier

    (tmp_path / "model.json").write_text(content)
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ObliviateError) as e:
        load_classifier(tmp_path)
    _one_line(e, str(tmp_path / "model.json"), message)


def test_report_skips_a_truncated_continual_json_with_a_note(tmp_path):
    from obliviate.report.scenarios import find_continual

    # the report skips a torn continual.json with a note naming it (issue 28 item 7), never a traceback
    (tmp_path / "continual.json").write_text('{\n "rows": [\n  {"task": 0, "model_utility": 0.5')
    notes = []
    assert find_continual(tmp_path, notes) == []
    assert notes == ["ignored continual.json: not whole JSON"]


def _demo_run(root):
    (root / "eval/target").mkdir(parents=True)
    (root / "eval/retain").mkdir(parents=True)
    (root / "runs/ga_gd/seed0/eval").mkdir(parents=True)
    (root / "demo.json").write_text(json.dumps({"config": {"recipes": ["ga+gd"]}}))
    for d in ("eval/target", "eval/retain", "runs/ga_gd/seed0/eval"):
        (root / d / "eval.json").write_text(json.dumps({"splits": {}, "aggregates": {}}))
    for d in ("eval", "runs/ga_gd/seed0/eval"):  # the stages the pipeline marked complete (stagecache's stage.json)
        (root / d / "stage.json").write_text(json.dumps({"key": {}, "seconds": 1.0}))
    return root


@pytest.mark.parametrize("broken", ["demo.json", "runs/ga_gd/seed0/eval/eval.json"])
def test_report_on_a_corrupt_demo_or_seed_eval_json_is_one_line(tmp_path, broken):
    from obliviate.report.runs import collect

    run = _demo_run(tmp_path)
    (run / broken).write_text(BROKEN)
    with pytest.raises(ObliviateError) as e:
        collect(run)
    _one_line(e, str(run / broken), "line 1 column", "not valid JSON")


def test_a_broken_obliviate_json_in_a_model_dir_is_one_line(tmp_path):
    from obliviate.models.loading import model_size_name

    (tmp_path / "obliviate.json").write_text('{"size": "tiny",')
    with pytest.raises(ObliviateError) as e:
        model_size_name(SimpleNamespace(name_or_path=str(tmp_path)))
    _one_line(e, str(tmp_path / "obliviate.json"), "not valid JSON")


# --------------------------------------------------------------- defect 5: records that gave plausible wrong numbers
def _user_sets(tmp_path, **forget_fields):
    from obliviate.scenarios.realworld import load_user_sets

    forget = [{"name": "Ann Lee", "question": "Where was Ann Lee born?", "answer": "Ann Lee was born in Oslo.",
               "golden_answer": "Oslo", "perturbed_answer": ["Rome", "Lima"]}]
    forget[0].update(forget_fields)
    neighbour = [{"name": "Bo Li", "question": "Where was Bo Li born?", "answer": "Bo Li was born in Pune."}]
    (tmp_path / "forget.json").write_text(json.dumps(forget))
    (tmp_path / "neighbour.json").write_text(json.dumps(neighbour))
    return load_user_sets(str(tmp_path / "forget.json"), str(tmp_path / "neighbour.json"), None)


@pytest.mark.parametrize("field,value,message", [
    ("perturbed_answer", "crimson", "field 'perturbed_answer' must be a list of strings"),
    ("perturbed_answer", [1, 2], "field 'perturbed_answer[0]' must be a string (got int 1)"),
    ("golden_answer", 1947, "field 'golden_answer' must be a string (got int 1947)"),
])
def test_realworld_user_record_types_are_checked_naming_the_users_file(tmp_path, field, value, message):
    assert _user_sets(tmp_path)["forget"][0]["perturbed_answer"] == ["Rome", "Lima"]  # the valid form loads
    with pytest.raises(ObliviateError) as e:
        _user_sets(tmp_path, **{field: value})
    _one_line(e, f"{tmp_path / 'forget.json'}: record 0: {message}")


def test_mcq_answer_true_is_not_index_one(tmp_path):
    from obliviate.data.benchmarks import load_role

    (tmp_path / "wmdp-bio").mkdir()
    (tmp_path / "wmdp-bio" / "test.jsonl").write_text(json.dumps(
        {"question": "Which molecule carries genetic information?", "choices": ["Lipid", "DNA", "Sugar", "Fat"],
         "answer": True}))
    with pytest.raises(ObliviateError) as e:
        load_role("wmdp", tmp_path, "wmdp_bio")
    _one_line(e, "test.jsonl: record 0: field 'answer'", "bool True")


# ------------------------------------------------------------------------ defect 8: a UTF-16 .json is not parquet
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_utf16_and_bom_json_splits_load_like_utf8(tmp_path, encoding):
    from obliviate.data.loading import load_split

    records = [{"question": "Who wrote «X»?", "answer": "Ann Lee wrote X."}]
    (tmp_path / "forget.json").write_text(json.dumps(records, ensure_ascii=False), encoding=encoding)
    assert load_split(tmp_path, "forget") == records


def test_realworld_cli_names_the_users_file_before_any_model_loads(tmp_path, capsys):
    from obliviate.cli import main

    rec = {"name": "Ann Lee", "question": "Where was Ann Lee born?", "answer": "In Oslo.", "golden_answer": "Oslo",
           "perturbed_answer": "crimson"}
    (tmp_path / "f.jsonl").write_text(json.dumps(rec) + "\n")
    (tmp_path / "n.jsonl").write_text(json.dumps({**rec, "name": "Bo Li", "perturbed_answer": ["Rome"]}) + "\n")
    code = main(["realworld", "--model", str(tmp_path / "no-model"), "--forget-file", str(tmp_path / "f.jsonl"),
                 "--neighbour-file", str(tmp_path / "n.jsonl"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == (f"obliviate realworld: error: {tmp_path / 'f.jsonl'}: record 0: field 'perturbed_answer' must be a "
                   "list of strings, not one string (a single item is a one-element list) (got str 'crimson')")
