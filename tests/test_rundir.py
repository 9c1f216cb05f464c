"""Run directories (issue 9, "nothing the user had is lost"): ownership marker, refusal of a user's directory,
--overwrite only removes what obliviate wrote, writable check before any work, run lock, atomic JSON, pruning."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate import ObliviateError
from obliviate.cli import main


def test_claim_refuses_a_users_non_empty_directory_and_marks_ours(tmp_path):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.json").write_text("user's own")
    with pytest.raises(ObliviateError, match="obliviate did not create"):
        claim(user)
    assert (user / "config.json").read_text() == "user's own" and not (user / MARKER).exists()
    fresh = claim(tmp_path / "new" / "run")
    assert (fresh / MARKER).is_file()
    (fresh / "x.json").write_text("{}")
    assert claim(fresh) == fresh  # ours: reusable


def test_overwrite_removes_only_what_obliviate_wrote(tmp_path):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    with run_dir(tmp_path / "r") as out:
        (out / "checkpoints").mkdir()
        (out / "log.jsonl").write_text("")
    (out / "notes.txt").write_text("user notes")  # the user adds a file afterwards
    with run_dir(out):
        pass  # a later run that writes nothing new must not adopt the user's file
    assert remove_ours(out, ["checkpoints", "log.jsonl", "notes.txt"]) == ["checkpoints", "log.jsonl"]
    assert (out / "notes.txt").read_text() == "user notes"


def test_unwritable_and_impossible_paths_are_one_line_errors(tmp_path):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ObliviateError, match="is a file, not a directory"):
        claim(f / "run")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(ObliviateError, match="not writable"):
            claim(ro / "run")


def test_lock_refuses_a_second_live_run_and_takes_over_a_stale_one(tmp_path):
    """The holder is another process holding the OS lock; once it is killed (-9) the kernel has dropped the lock and a
    stale lock file with a dead pid in it does not block anyone."""
    from obliviate.rundir import lock

    out = tmp_path / "r"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom obliviate.rundir import lock\n"
                               f"with lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ObliviateError, match=f"another obliviate run \\(pid {holder.pid}\\)"):
            with lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".obliviate.lock").read_text() == str(holder.pid)  # left behind by the killed holder
    with lock(out):  # the holder is dead: its lock is stale
        assert (out / ".obliviate.lock").read_text() == str(os.getpid())
        with lock(out):  # re-entrant within one process
            pass


def test_write_json_is_atomic_and_leaves_no_temporary(tmp_path):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    p = write_json(tmp_path / "a" / "x.json", {"v": 1})
    assert json.loads(p.read_text()) == {"v": 1}
    assert [f.name for f in p.parent.iterdir()] == ["x.json"]
    write_json(p, {"v": 2})
    with pytest.raises(ZeroDivisionError):  # serialisation fails midway: the old file stays, no temporary is left
        write_json(p, {"v": object.__new__(type("X", (), {"__str__": lambda s: 1 / 0}))})
    assert json.loads(p.read_text()) == {"v": 2} and [f.name for f in p.parent.iterdir()] == ["x.json"]


def test_world_out_refuses_a_users_directory(tmp_path, capsys):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    user = tmp_path / "data"
    user.mkdir()
    (user / "forget10.json").write_text("[my own records]")
    assert main(["world", "--preset", "tiny", "--out", str(user)]) == 2
    assert "obliviate did not create" in capsys.readouterr().err
    assert (user / "forget10.json").read_text() == "[my own records]"
    assert main(["world", "--preset", "tiny", "--out", str(tmp_path / "w")]) == 0
    assert (tmp_path / "w" / MARKER).is_file()


def test_finetune_refuses_unwritable_out_before_training(base_dir, world_dir, tmp_path, capsys):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    assert main(["finetune", "--model", str(base_dir), "--data", str(world_dir), "--out", str(blocker / "m"),
                 "max_steps=1"]) == 2
    err = capsys.readouterr()
    assert "is a file, not a directory" in err.err and "trained" not in err.out


def test_finetune_refuses_a_users_directory_with_config_json(base_dir, world_dir, tmp_path, capsys):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    user = tmp_path / "u"
    user.mkdir()
    for f in ("config.json", "run.json", "tokenizer.json"):
        (user / f).write_text("mine")
    assert main(["finetune", "--model", str(base_dir), "--data", str(world_dir), "--out", str(user),
                 "max_steps=1"]) == 2
    assert "obliviate did not create" in capsys.readouterr().err
    assert all((user / f).read_text() == "mine" for f in ("config.json", "run.json", "tokenizer.json"))


def test_record_written_lists_new_entries(tmp_path):
    from obliviate.rundir import MARKER, claim, lock, record_written, remove_ours, run_dir, write_json  # noqa: F401

    out = claim(tmp_path / "r")
    (out / "a").write_text("")
    record_written(out)
    assert json.loads((out / MARKER).read_text())["written"] == ["a"]


# every file the package writes goes through rundir's atomic writers; these raw writes are deliberate
RAW_WRITES_ALLOWED = {
    ("unlearn/loop.py", "open"): "log.jsonl is appended one row per step (a log: a rerun never trusts it)",
    ("commands/config.py", "open"): "`config cp` creates the user's DEST exclusively ('xb'), never overwriting",
}


def _raw_writes(root: Path) -> list[tuple[str, int, str]]:
    """(module, line, call) of every Path.write_text / write_bytes method call and open(..., w/a/x) outside rundir."""
    import ast

    found = []
    for f in sorted(root.rglob("*.py")):
        rel = str(f.relative_to(root))
        if rel == "rundir.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes"):
                found.append((rel, node.lineno, node.func.attr))
            elif isinstance(node.func, ast.Name) and node.func.id == "open" and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant) and set(str(node.args[1].value)) & set("wax+"):
                found.append((rel, node.lineno, "open"))
    return found


def test_the_package_writes_files_only_through_rundir():
    root = Path(__file__).resolve().parents[1] / "src" / "obliviate"
    raw = [(m, line, call) for m, line, call in _raw_writes(root) if (m, call) not in RAW_WRITES_ALLOWED]
    assert not raw, f"write through obliviate.rundir (write_text / write_bytes / write_json / atomic_file): {raw}"


def test_the_raw_write_guard_catches_one(tmp_path):
    (tmp_path / "m.py").write_text("from pathlib import Path\nPath('x').write_text('y')\nopen('z', 'wb')\n")
    assert _raw_writes(tmp_path) == [("m.py", 2, "write_text"), ("m.py", 3, "open")]
