"""Benchmark records, local mirrors of the hub layout (fixtures), hub addressing and loader errors."""

import json
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.data.benchmarks import BENCHMARKS, FORMAT_FIELDS, infer_benchmark, load_role, training_records
from obliviate.data.loading import load_split

FIX = Path(__file__).parents[1] / "fixtures"


def test_tofu_published_files_are_json_lines_named_json():
    f = FIX / "tofu" / "forget01.json"
    assert f.read_text().count("\n") == 2 and not f.read_text().startswith("[")  # JSON Lines, as published
    recs = load_split(FIX / "tofu", "forget01_perturbed")
    assert len(recs) == 2 and len(recs[0]["perturbed_answer"]) == 5
    assert load_split(FIX / "tofu", "forget01+retain99") == load_split(FIX / "tofu", "full")[-2:] + \
        load_split(FIX / "tofu", "full")[:-2]


def test_json_content_decides_not_the_extension(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps([{"question": "q", "answer": "a"}]))  # a list named .jsonl
    (tmp_path / "b.json").write_text('{"question": "q", "answer": "a"}\n')  # one JSON line named .json
    assert load_split(tmp_path, "a") == load_split(tmp_path, "b") == [{"question": "q", "answer": "a"}]
    (tmp_path / "c.json").write_text('{"question": "q", "answer": "a"}\n{"question": oops}\n')
    with pytest.raises(ObliviateError, match=r"c\.json: line 2 column \d+: not valid JSON"):
        load_split(tmp_path, "c")


def test_parquet_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "raw").mkdir()
    pq.write_table(pa.Table.from_pylist([{"text": "hello world"}]), tmp_path / "raw" / "forget.parquet")
    assert load_role("muse-news", tmp_path, "forget_train") == [{"text": "hello world"}]


@pytest.mark.parametrize("name", ["tofu", "muse-news", "muse-books", "wmdp", "rwku"])
def test_every_role_of_every_fixture_loads_with_its_format_fields(name):
    bench = BENCHMARKS[name]
    if bench.train_splits:  # TOFU: its unlearning sets by split name
        assert training_records(bench, FIX / name, "forget_train", "forget01")[1] == "qa"
    for role, r in bench.roles.items():
        recs = load_role(bench, FIX / name, role)
        assert recs and all(all(f in rec for f in FORMAT_FIELDS[r.format]) for rec in recs), role


def test_rwku_fields_are_renamed_from_the_published_names():
    recs = load_role("rwku", FIX / "rwku", "forget_level2")
    assert recs[0]["question"] == "In which state was Stephen King born?" and recs[0]["answer"] == "Maine"
    assert recs[0]["level"] == "2" and recs[0]["subject"] == "Stephen King"
    assert load_role("rwku", FIX / "rwku", "forget_train")[0]["text"].startswith("Stephen King is")


def test_infer_benchmark_from_declared_files_never_from_the_path(tmp_path):
    import shutil

    assert [infer_benchmark(FIX / n) for n in ("wmdp", "rwku", "tofu")] == ["wmdp", "rwku", "tofu"]
    assert infer_benchmark("muse-bench/MUSE-Books") == "muse-books"
    assert infer_benchmark("locuslab/TOFU") == "tofu"
    # MUSE News and Books declare the same files: the directory's name does not decide, --benchmark does
    for name in ("muse-news", "muse-books"):
        with pytest.raises(ObliviateError, match=r"laid out like each of muse-news, muse-books: pass --benchmark") as e:
            infer_benchmark(FIX / name)
        assert "\n" not in str(e.value)
    shutil.copytree(FIX / "wmdp", tmp_path / "muse-books-not")  # a misleading name: the files say wmdp
    assert infer_benchmark(tmp_path / "muse-books-not") == "wmdp"


# Every published (hub id, config, split), exactly as the hub names them.
PUBLISHED = {
    "muse-news": {"forget_train": ("muse-bench/MUSE-News", "raw", "forget"),
                  "retain_train": ("muse-bench/MUSE-News", "raw", "retain1"),
                  "verbmem": ("muse-bench/MUSE-News", "verbmem", "forget"),
                  "knowmem": ("muse-bench/MUSE-News", "knowmem", "forget_qa"),
                  "knowmem_retain": ("muse-bench/MUSE-News", "knowmem", "retain_qa"),
                  "knowmem_icl": ("muse-bench/MUSE-News", "knowmem", "forget_qa_icl"),
                  "knowmem_retain_icl": ("muse-bench/MUSE-News", "knowmem", "retain_qa_icl"),
                  "privleak_forget": ("muse-bench/MUSE-News", "privleak", "forget"),
                  "privleak_holdout": ("muse-bench/MUSE-News", "privleak", "holdout")},
    "wmdp": {"forget_train": ("cais/wmdp-corpora", "cyber-forget-corpus", "train"),
             "retain_train": ("cais/wmdp-corpora", "cyber-retain-corpus", "train"),
             "wmdp_bio": ("cais/wmdp", "wmdp-bio", "test"), "wmdp_cyber": ("cais/wmdp", "wmdp-cyber", "test"),
             "wmdp_chem": ("cais/wmdp", "wmdp-chem", "test"), "mmlu": ("cais/mmlu", "all", "test")},
    "rwku": {"forget_train": ("jinzhuoran/RWKU", "forget_target", "train"),
             **{f"forget_level{i}": ("jinzhuoran/RWKU", f"forget_level{i}", "test") for i in (1, 2, 3)},
             **{f"neighbor_level{i}": ("jinzhuoran/RWKU", f"neighbor_level{i}", "test") for i in (1, 2)},
             "mia_forget": ("jinzhuoran/RWKU", "mia_forget", "test"),
             "mia_retain": ("jinzhuoran/RWKU", "mia_retain", "test")},
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_hub_ids_configs_splits_are_requested_as_published(name, monkeypatch):
    import datasets

    calls = []

    def fake(path, config=None, split=None, **kw):
        calls.append((path, config, split))
        fmt = next(r.format for r in BENCHMARKS[name].roles.values() if (r.config, r.split) == (config, split))
        return [{"text": {"text": "t"}, "prompt": {"prompt": "p", "gt": "g"},
                 "mcq": {"question": "q", "choices": ["a", "b"], "answer": 0},
                 "qa": {"query": "q", "question": "q", "answer": "a"}}[fmt]]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    for role, want in PUBLISHED[name].items():
        load_role(name, None, role)
        assert calls[-1] == want, role
    assert set(PUBLISHED[name]) == set(BENCHMARKS[name].roles)


def test_tofu_hub_split_is_its_config_train(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset",
                        lambda p, n=None, split=None: calls.append((p, n, split)) or [{"question": "q", "answer": "a"}])
    load_split("locuslab/TOFU", "forget10")
    load_split("muse-bench/MUSE-News", "knowmem/retain_qa")
    assert calls == [("locuslab/TOFU", "forget10", "train"), ("muse-bench/MUSE-News", "knowmem", "retain_qa")]


def test_offline_hub_fails_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ObliviateError) as e:
        load_role("muse-news", None, "verbmem")
    msg = str(e.value)
    assert "\n" not in msg and "muse-news" in msg and "verbmem" in msg and "muse-bench/MUSE-News" in msg
    assert "pass --data DIR" in msg


def test_gated_bio_corpus_says_how_to_obtain_it(tmp_path):
    with pytest.raises(ObliviateError, match=r"bio-forget-corpus.*gated.*request access") as e:
        training_records("wmdp", tmp_path, "forget_train", "bio-forget-corpus/train")
    assert "\n" not in str(e.value)


def test_loader_errors_name_benchmark_split_and_file(tmp_path):
    (tmp_path / "verbmem").mkdir()
    (tmp_path / "verbmem" / "forget.json").write_text('{"prompt": "p"}\n')
    with pytest.raises(ObliviateError, match=r"benchmark muse-news, role verbmem \(verbmem/forget\): .*forget\.json: "
                                             r"record 0: missing field 'gt'"):
        load_role("muse-news", tmp_path, "verbmem")
    with pytest.raises(ObliviateError, match=r"benchmark muse-news, role knowmem \(knowmem/forget_qa\): no file"):
        load_role("muse-news", tmp_path, "knowmem")


def test_benchmark_metrics_are_registered_and_roles_exist():
    from obliviate.evaluate.metrics import METRICS

    for b in BENCHMARKS.values():
        for role, names in b.metrics.items():
            assert set(names) <= set(METRICS), (b.name, role)
            assert role in b.roles or role in b.split_roles, (b.name, role)
        assert b.mia is None or set(b.mia) <= set(b.roles) | set(b.split_roles)
