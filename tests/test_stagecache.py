"""The one stage / resume mechanism (obliviate.stagecache): a stage is reused when its key matches, recomputed when
the key changes, and a torn or partial stage is never trusted."""

import json

import pytest

from obliviate import ObliviateError
from obliviate.stagecache import PACKAGE_ROOT, Stages, cached, code_hash, digest, first_difference, load_stage, \
    save_stage


def _stage(st, path, key, calls, value="x"):
    def fn(d):
        calls.append(key)
        (d / "out.txt").write_text(value)
    st.run(path, key, fn)


def test_directory_stage_is_reused_when_the_key_matches_and_redone_when_it_changes(tmp_path):
    st, calls = Stages(tmp_path), []
    key = {"preset": "tiny", "code": "abc", "lr": 1e-3, "steps": (5, 10)}
    _stage(st, tmp_path / "s", key, calls)
    assert calls == [key] and st.timings["s"]["reused"] is False
    info = json.loads((tmp_path / "s" / "stage.json").read_text())
    assert set(info) == {"key", "seconds"} and info["key"]["steps"] == [5, 10]  # the key as it reads back
    st2 = Stages(tmp_path)
    _stage(st2, tmp_path / "s", key, calls)  # a tuple and the list it was stored as are the same key
    assert len(calls) == 1 and st2.timings["s"]["reused"] is True
    _stage(st2, tmp_path / "s", {**key, "code": "abd"}, calls, value="y")  # the code changed: run again
    assert len(calls) == 2 and (tmp_path / "s" / "out.txt").read_text() == "y"
    assert json.loads((tmp_path / "s" / "stage.json").read_text())["key"]["code"] == "abd"


def test_a_torn_or_partial_stage_is_never_trusted(tmp_path):
    st, calls, key = Stages(tmp_path), [], {"k": 1}
    # a killed run: the stage was being filled in s.partial; nothing under the final name
    (tmp_path / "s.partial").mkdir()
    (tmp_path / "s.partial" / "out.txt").write_text("half")
    _stage(st, tmp_path / "s", key, calls)
    assert calls == [key] and not (tmp_path / "s.partial").exists()
    # a stage.json cut short (a copy interrupted, a full disk), or one without its seconds: redone
    for broken in ('{"key": {"k": 1}, "seco', '{"key": {"k": 1}}', "", "[1, 2]"):
        (tmp_path / "s" / "stage.json").write_text(broken)
        _stage(Stages(tmp_path), tmp_path / "s", key, calls)
        assert len(calls) == 1 + 1 and json.loads((tmp_path / "s" / "stage.json").read_text())["key"] == key
        calls.pop()
    # a stage whose function fails leaves no finished stage behind
    def fail(d):
        (d / "out.txt").write_text("partial")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        Stages(tmp_path).run(tmp_path / "t", key, fail)
    assert not (tmp_path / "t").exists() and (tmp_path / "t.partial").is_dir()
    calls.clear()
    _stage(Stages(tmp_path), tmp_path / "t", key, calls)
    assert calls == [key] and (tmp_path / "t" / "out.txt").read_text() == "x"


def test_records_and_value_files(tmp_path):
    f = tmp_path / "probes.json"
    assert load_stage(f, {"m": 1}) is None  # absent
    save_stage(f, {"m": 1}, probes=[1, 2])
    assert load_stage(f, {"m": 1})["probes"] == [1, 2]
    assert load_stage(f, {"m": 2}) is None  # another key: a miss
    with pytest.raises(ObliviateError, match=r"probes\.json: other run \(m differs\)"):
        load_stage(f, {"m": 2}, refuse="other run ({} differs)")
    f.write_text('{"key": {"m": 1}, "probes": [1,')  # torn
    assert load_stage(f, {"m": 1}) is None
    assert first_difference({"a": 1, "b": 2}, {"a": 1, "b": 3}) == "b" and first_difference([1], [1]) is None

    calls = []
    v = tmp_path / f"forget.forward.{digest(['k', 1])[:16]}.json"
    assert cached(v, lambda: calls.append(1) or {"x": 1.5}) == {"x": 1.5}
    assert cached(v, lambda: calls.append(1) or {"x": 9}) == {"x": 1.5} and calls == [1]
    v.write_text('{"x": 1.')  # torn: recomputed and rewritten
    assert cached(v, lambda: calls.append(1) or {"x": 2}) == {"x": 2} and json.loads(v.read_text()) == {"x": 2}
    assert cached(None, lambda: 7) == 7  # no cache directory: computed every time


def test_code_hash_reads_the_package_itself_and_follows_its_code(tmp_path):
    assert PACKAGE_ROOT == __import__("pathlib").Path(__import__("obliviate").__file__).parent
    assert len(code_hash("data")) == 12 and code_hash("data") == code_hash("data") != code_hash("data", "models")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "mod.py").write_text("y = 1\n")
    before = code_hash("pkg", "mod", root=tmp_path)
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert code_hash("pkg", "mod", root=tmp_path) != before
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not code")
    assert code_hash("pkg", "mod", root=tmp_path) == before  # only the .py sources count
