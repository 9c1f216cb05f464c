"""The run frame (issue 28): every verb of `cli.VERBS` that writes goes through `rundir.run_dir`.

Each writing verb runs (micro settings, in-process) against a non-empty directory of the user's, an existing file,
a directory another live run holds, a read-only directory and a full disk. Every one must be refused with exit code
2 and one line on stderr, before any work, leaving the user's files as they were and nothing of its own behind.
A verb that writes nothing is declared in `NO_WRITES` with the reason; a verb in neither table fails the test, so a
new verb cannot miss the frame. Read-only and full disk are simulated (the tests may run as root, which ignores
permission bits): every create, rename and open-for-writing under the directory raises EROFS / ENOSPC.
"""

import builtins
import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate.cli import VERBS, main

NO_WRITES = {"ls": "prints the registries to stdout"}
# verbs that write one file the user names instead of a run directory: tested below (never overwritten, one line)
ONE_FILE = {"config": "`config cp NAME DEST` copies one shipped YAML to DEST (exclusive create)"}


def _argv(verb: str, out: Path, world: Path, base: Path) -> list[str]:
    """The cheapest command line of a writing verb with `--out out` (all are refused before any work here)."""
    w, b, o = str(world), str(base), str(out)
    return {
        "world": ["world", "--preset", "tiny", "--out", o],
        "init-model": ["init-model", "--size", "micro", "--data", w, "--out", o],
        "finetune": ["finetune", "--model", b, "--data", w, "--out", o, "max_steps=1"],
        "unlearn": ["unlearn", "--model", b, "--data", w, "--recipe", "ga", "--out", o, "max_steps=1"],
        "eval": ["eval", "--model", b, "--data", w, "--out", o, "max_items=2", "max_new_tokens=2"],
        "attack": ["attack", "mia", "--model", b, "--data", w, "--out", o],
        "demo": ["demo", "--preset", "tiny", "--seeds", "1", "--out", o],
        "reproduce": ["reproduce", "--model", b, "--preset", "tiny", "--seeds", "1", "--out", o],
        "report": ["report", o],
        "steal": ["steal", "--train-target", "digits", "--out", o, "budget=100"],
        "invert": ["invert", "--train-target", "digits", "--out", o],
        "continual": ["continual", "--model", b, "--data", w, "--tasks", "1", "--out", o, "max_steps=1"],
        "realworld": ["realworld", "--model", b, "--out", o, "max_steps=1"],
        "bench": ["bench", "--model", b, "--data", w, "--recipes", "none", "--no-fixed-cost", "--out", o],
        "tune": ["tune", "--model", b, "--data", w, "--recipe", "ga+gd", "--out", o, "--n-trials", "1"],
    }.get(verb)


WRITING = sorted(v for v in VERBS if v not in NO_WRITES and v not in ONE_FILE)


def test_every_verb_is_declared():
    """A verb added to VERBS needs a micro command line here (and so goes through the frame) or a NO_WRITES reason."""
    undeclared = [v for v in VERBS if v not in NO_WRITES and v not in ONE_FILE
                  and _argv(v, Path("o"), Path("w"), Path("b")) is None]
    assert not undeclared, f"add these verbs to _argv (they write) or to NO_WRITES with a reason: {undeclared}"
    assert not (set(NO_WRITES) | set(ONE_FILE)) - set(VERBS)


@pytest.mark.parametrize("case", ("file", "read-only", "full-disk"))
def test_config_cp_never_overwrites_and_fails_in_one_line(case, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "mine.yaml"
    if case == "file":
        dest.write_text("my own config")
    else:
        fail_under(monkeypatch, tmp_path, errno.EROFS if case == "read-only" else errno.ENOSPC)
    code = main(["config", "cp", "unlearn_npo_gd_sam", str(dest)])
    monkeypatch.undo()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    said = {"file": "already exists; refusing to overwrite", "read-only": "cannot write it",
            "full-disk": "no space left on device"}[case]
    assert lines[0].startswith("obliviate config: error: ") and said in lines[0], lines
    assert (dest.read_text() == "my own config") if case == "file" else not dest.exists()


@pytest.fixture(scope="module")
def held_dir(tmp_path_factory):
    """An obliviate run directory whose lock another live process holds (a first run still going)."""
    from obliviate.rundir import claim

    out = claim(tmp_path_factory.mktemp("held") / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom obliviate.rundir import lock\n"
                               f"with lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield out, holder.pid
    holder.kill()
    holder.wait()


def fail_under(monkeypatch, root: Path, code: int) -> None:
    """Every create, rename, mkdir and open-for-writing of a path under `root` raises OSError(`code`)."""
    root = str(root)

    def under(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(root)

    def wrap(fn, *, paths=(0,), writing=None):
        def fake(*args, **kwargs):
            if any(under(args[i]) for i in paths if i < len(args)) and (writing is None or writing(args, kwargs)):
                raise OSError(code, os.strerror(code), os.fspath(args[paths[-1]]))
            return fn(*args, **kwargs)
        return fake

    def opens_for_writing(args, kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        return isinstance(mode, str) and any(c in mode for c in "wax+")

    def os_open_writes(args, kwargs):
        flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))

    monkeypatch.setattr(os, "mkdir", wrap(os.mkdir))
    monkeypatch.setattr(os, "open", wrap(os.open, writing=os_open_writes))
    monkeypatch.setattr(os, "replace", wrap(os.replace, paths=(0, 1)))
    monkeypatch.setattr(os, "rename", wrap(os.rename, paths=(0, 1)))
    monkeypatch.setattr(builtins, "open", wrap(builtins.open, writing=opens_for_writing))
    monkeypatch.setattr(io, "open", wrap(io.open, writing=opens_for_writing))


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


CASES = ("user-dir", "file", "locked", "read-only", "full-disk")
EXPECT = {"user-dir": "obliviate did not create", "file": "is a file, not a directory",
          "locked": "another obliviate run (pid {pid})", "read-only": "not writable",
          "full-disk": "no space left on device"}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("verb", WRITING)
def test_writing_verb_goes_through_the_run_frame(verb, case, world_dir, base_dir, held_dir, tmp_path, monkeypatch,
                                                  capsys):
    held, pid = held_dir
    if case == "user-dir":
        out = tmp_path / "mine"
        (out / "data").mkdir(parents=True)
        (out / "data" / "forget.json").write_text("[my own records]")
        (out / "bench.md").write_text("my notes")
    elif case == "file":
        out = tmp_path / "results.txt"
        out.write_text("my results")
    elif case == "locked":
        out = held
    else:
        out = tmp_path / "disk" / "run"
        (tmp_path / "disk").mkdir()
        fail_under(monkeypatch, tmp_path / "disk", errno.EROFS if case == "read-only" else errno.ENOSPC)
    before = _snapshot(tmp_path)
    code = main(_argv(verb, out, world_dir, base_dir))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 2, f"{verb} on {case}: exit {code}, stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and EXPECT[case].format(pid=pid) in lines[0], lines
    if case == "full-disk":
        assert "MiB free" in lines[0]
    if case != "locked":
        assert _snapshot(tmp_path) == before, f"{verb} changed the directory on {case}"


def test_a_run_that_fails_early_leaves_no_trace(world_dir, tmp_path, capsys):
    """The frame claims --out; a run that then fails before writing anything removes what the claim made (the new
    directory and its parents), and of a user's empty directory only the marker (the directory stays)."""
    bad_model = tmp_path / "no-such-model"
    assert main(["eval", "--model", str(bad_model), "--data", str(world_dir), "--out",
                 str(tmp_path / "new" / "eval")]) == 2
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--model", str(bad_model), "--data", str(world_dir), "--out", str(empty)]) == 2
    assert empty.is_dir() and list(empty.iterdir()) == []
    capsys.readouterr()
