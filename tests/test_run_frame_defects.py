"""Regression tests of issue 28's defects 2 (processes), 4 (disk full) and 9 (checkpoint symlinks, file modes).
Defect 1 (data loss, no lock: realworld, continual, bench) is tests/test_run_frame.py's user-dir / locked / file
cases, which every writing verb runs."""

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from obliviate import ObliviateError
from obliviate.cli import main

# ---- defect 2: a worker and its parent are tied both ways -------------------------------------------------------

SLEEPER = "import time\n\ndef sleep(*args):\n    time.sleep(120)\n"
PARENT = textwrap.dedent("""
    import sys
    import sleeper
    from obliviate import ObliviateError
    from obliviate.pipeline.bench import _spawn
    try:
        _spawn(sleeper.sleep, {{}}, "model", "data")
    except ObliviateError as e:
        print(f"error: {{e}}", file=sys.stderr)
        sys.exit(2)
""")


def _bench_parent(tmp_path):
    """A process running one bench worker (`bench._spawn`) that sleeps; returns (parent, worker) psutil handles."""
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format()], env=env, stderr=subprocess.PIPE, text=True)
    handle = psutil.Process(parent.pid)
    deadline = time.time() + 60
    while time.time() < deadline:
        workers = [c for c in handle.children(recursive=True) if "resource_tracker" not in " ".join(c.cmdline())]
        if workers:
            time.sleep(2)  # the worker has imported and entered its call
            return parent, workers[0]
        time.sleep(0.2)
    parent.kill()
    raise AssertionError("the bench worker did not start")


def test_a_killed_bench_worker_is_an_error_in_the_parent_within_seconds(tmp_path):
    parent, worker = _bench_parent(tmp_path)
    try:
        worker.send_signal(signal.SIGKILL)
        t = time.time()
        code = parent.wait(timeout=15)  # the old parent waited forever on queue.get()
        err = parent.stderr.read()
        assert code == 2 and "died with exit code" in err and time.time() - t < 10, err
    finally:
        parent.kill()
        parent.wait()


def test_a_killed_bench_parent_ends_its_worker(tmp_path):
    parent, worker = _bench_parent(tmp_path)
    parent.kill()  # SIGKILL: no cleanup of the parent's runs
    parent.wait()
    try:
        worker.wait(timeout=10)  # the old worker went on computing
    except psutil.TimeoutExpired:
        worker.kill()
        pytest.fail("the bench worker outlived its parent by 10 s")


def test_bench_names_come_from_a_known_list(capsys):
    """`obliviate bench ../../../x/evil` names no script: refused without ever forming a path from it."""
    assert main(["bench", "../../../x/evil"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark" in err and "benchmarks/../" not in err and len(err.strip().splitlines()) == 1


def test_the_known_bench_names_are_the_checkouts_scripts():
    from obliviate.commands.bench import SCRIPTS

    checkout = Path(__file__).resolve().parents[1] / "benchmarks"
    assert set(SCRIPTS) == {p.stem for p in checkout.glob("*.py")}


# ---- defect 4: a full disk is one line, and nothing half-written is trusted --------------------------------------

def _full_disk_on(monkeypatch, name: str):
    """Writing a file called `name` fails with ENOSPC after half of it is on disk (the real failure's shape)."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if Path(dst).name == name:
            Path(src).write_bytes(Path(src).read_bytes()[: Path(src).stat().st_size // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def _one_line_disk_full(capsys) -> str:
    """stderr holds progress bars, then the verb's one error line and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("obliviate ") and ": warning: " not in line]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert ": error: " in lines[0] and "no space left on device" in lines[0] and "MiB free" in lines[0], lines
    return lines[0]


def test_unlearn_on_a_full_disk_at_save_is_one_line_and_saves_no_model(base_dir, world_dir, tmp_path, monkeypatch,
                                                                         capsys):
    import transformers.modeling_utils as mu

    def half_then_full(tensors, filename, *a, **k):
        Path(filename).write_bytes(b"\0" * 64)  # a torn weights file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mu, "safe_save_file", half_then_full)
    out = tmp_path / "u"
    argv = ["unlearn", "--model", str(base_dir), "--data", str(world_dir), "--recipe", "ga", "--out", str(out),
            "max_steps=1", "batch_size=2"]
    for rerun in ([], ["--overwrite"]):  # the rerun on the still-full disk too
        assert main(argv + rerun) == 2
        _one_line_disk_full(capsys)
        assert not any((out / f).exists() for f in ("config.json", "model.safetensors", "summary.json"))
    monkeypatch.undo()
    assert main(argv + ["--overwrite"]) == 0  # space again: the run starts over and saves a model
    from obliviate.models.loading import load_model

    load_model(out)


def test_eval_on_a_full_disk_is_one_line_and_leaves_no_eval_json(base_dir, world_dir, tmp_path, monkeypatch, capsys):
    _full_disk_on(monkeypatch, "eval.json")
    out = tmp_path / "e"
    argv = ["eval", "--model", str(base_dir), "--data", str(world_dir), "--out", str(out), "max_items=2",
            "max_new_tokens=2"]
    for _ in range(2):  # first run and rerun
        assert main(argv) == 2
        _one_line_disk_full(capsys)
        assert not (out / "eval.json").exists()
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_torch_save_short_write_is_a_full_disk_even_with_space_free_again(tmp_path):
    """torch.save's "unexpected pos" (it wrote fewer bytes than it was given): seen on a full disk with 846 MiB free
    again afterwards (a reproduce run's 1.6 GB checkpoint); other inline_container errors are not a full disk."""
    import torch

    from obliviate.rundir import DiskFull, atomic_dir, disk_full

    short = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 892145344 vs 892145236")
    assert isinstance(disk_full(short, tmp_path / "step-16"), DiskFull)
    assert "no space left on device" in str(disk_full(short, tmp_path / "step-16"))
    assert disk_full(RuntimeError("[enforce fail at inline_container.cc:300] . file not found: x"), tmp_path) is None
    final = tmp_path / "ckpt" / "step-16"
    with pytest.raises(DiskFull, match="step-16: no space left on device"):
        with atomic_dir(final) as tmp:
            torch.save({"x": 1}, tmp / "state.pt")
            raise short
    assert not final.exists() and not final.with_name("step-16.partial").exists()  # the space given back


def test_world_rerun_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w"
    assert main(["world", "--preset", "tiny", "--out", str(out)]) == 0
    capsys.readouterr()
    _full_disk_on(monkeypatch, "forget10.json")
    assert main(["world", "--preset", "tiny", "--seed", "1", "--out", str(out), "--overwrite"]) == 2
    _one_line_disk_full(capsys)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ---- defect 9: checkpoints are never deleted through a symlink; files follow the umask ---------------------------

def test_pruning_never_follows_a_planted_checkpoints_symlink(tmp_path):
    from obliviate.unlearn.checkpoint import latest_checkpoint, prune_checkpoints

    user = tmp_path / "my_checkpoints"
    for n in (1, 2, 3):
        (user / f"step-{n}").mkdir(parents=True)
        (user / f"step-{n}" / "trainer.json").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(user)
    with pytest.raises(ObliviateError, match="symlink"):
        prune_checkpoints(run, keep=1)
    with pytest.raises(ObliviateError, match="symlink"):
        latest_checkpoint(run)
    assert sorted(p.name for p in user.iterdir()) == ["step-1", "step-2", "step-3"]


def test_pruning_unlinks_symlinks_inside_checkpoints_without_following_them(tmp_path):
    from obliviate.unlearn.checkpoint import prune_checkpoints

    user = tmp_path / "mine"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    root = tmp_path / "run" / "checkpoints"
    for n in (1, 2):
        (root / f"step-{n}").mkdir(parents=True)
    (root / "step-1" / "link").symlink_to(user)
    (root / "step-0").symlink_to(user)  # a link named like a checkpoint is not one
    assert prune_checkpoints(tmp_path / "run", keep=1) == [root / "step-1"]
    assert (user / "keep.txt").read_text() == "mine" and (root / "step-0").is_symlink() and (root / "step-2").is_dir()


def test_saved_files_follow_the_umask(base_dir, tmp_path):
    """safetensors writes through mkstemp (0600); every file of a save gets 0o666 & ~umask like the others."""
    from obliviate.models.loading import load_model, save_model
    from obliviate.rundir import atomic_dir

    model, tok = load_model(base_dir)
    umask = os.umask(0o022)
    os.umask(umask)
    save_model(model, tok, tmp_path / "m", extra={"size": "micro"})
    with atomic_dir(tmp_path / "ckpt") as d:
        from safetensors.torch import save_file

        save_file({"w": next(model.parameters()).detach().contiguous()}, d / "model.safetensors")
    files = [p for p in [*(tmp_path / "m").iterdir(), *(tmp_path / "ckpt").iterdir()] if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == \
        {p.name: oct(0o666 & ~umask) for p in files}


def test_a_killed_pool_worker_is_an_error_in_the_parent(tmp_path):
    """The demo's pool: a worker that dies without a word is one ObliviateError, not a hang or a traceback."""
    import functools

    from obliviate.pipeline.pool import run_jobs

    done = []
    t = time.time()
    with pytest.raises(ObliviateError, match="worker process died"):
        run_jobs([(functools.partial(os._exit, 9), done.append), (functools.partial(divmod, 7, 2), done.append)], 2)
    assert time.time() - t < 60


def test_unlearn_refuses_a_planted_checkpoints_symlink_before_training(base_dir, world_dir, tmp_path, capsys):
    from obliviate.rundir import claim

    user = tmp_path / "mine"
    (user / "step-1").mkdir(parents=True)
    out = claim(tmp_path / "run")
    (out / "checkpoints").symlink_to(user)
    assert main(["unlearn", "--model", str(base_dir), "--data", str(world_dir), "--recipe", "ga", "--out", str(out),
                 "max_steps=2", "checkpoint_every=1", "keep_checkpoints=1", "--resume"]) == 2
    assert "symlink" in capsys.readouterr().err
    assert [p.name for p in user.iterdir()] == ["step-1"] and not (out / "log.jsonl").exists()
