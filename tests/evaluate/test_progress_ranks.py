"""Issue 26 §5: progress bars on the main process only, one per stage (libraries' own bars off inside), and no
bar left open under an error line."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate.progress import close_progress_bars, library_bars_off, progress_bar


def test_bars_only_on_the_main_rank(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("RANK", "0")
    assert not progress_bar(range(3), desc="x", file=io.StringIO()).disable
    assert progress_bar(range(3), desc="x", progress=False).disable
    monkeypatch.setenv("RANK", "1")  # another process of `accelerate launch`
    assert progress_bar(range(3), desc="x").disable
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("TQDM_DISABLE", "1")  # tqdm's own switch still works
    assert progress_bar(range(3), desc="x", file=io.StringIO()).disable


def test_an_error_closes_the_open_bars(monkeypatch, capsys):
    """An ObliviateError unwinding past an open bar: the bar is closed before the one error line prints."""
    from obliviate import ObliviateError, cli

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv("RANK", "0")
    bars = []

    def run(args):
        bars.append(progress_bar(total=5, desc="stage", file=sys.stderr))
        bars[0].update(2)
        raise ObliviateError("bad value")

    monkeypatch.setattr(cli._module("ls"), "run", run)
    assert cli.main(["ls"]) == 2
    assert bars[0].disable  # closed (tqdm marks a closed bar disabled)
    assert capsys.readouterr().err.endswith("obliviate ls: error: bad value\n")


def test_library_bars_off_inside_and_restored():
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    with library_bars_off("transformers"):
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    with library_bars_off("transformers"):
        pass
    assert not hf_logging.is_progress_bar_enabled()  # left as it was
    hf_logging.enable_progress_bar()
    close_progress_bars()


@pytest.mark.slow
def test_two_processes_draw_bars_from_rank_0_only(base_dir, world_dir, tmp_path, free_port):
    """`obliviate eval` in two gloo CPU processes (torchrun, each rank's stderr to its own file): rank 0 draws the
    stage bars, rank 1 none."""
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env.update(OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    logs = tmp_path / "logs"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                        str(free_port), "--log-dir", str(logs), "--redirects", "2", "-m", "obliviate", "eval",
                        "--model", str(base_dir), "--data", str(world_dir), "--out", str(tmp_path / "ev"), "max_items=3",
                        "max_new_tokens=4", "embedder=null"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    err = {rank: next(Path(logs).rglob(f"{rank}/stderr.log")).read_text() for rank in (0, 1)}
    assert "forward forget" in err[0] and "%|" in err[0], err[0][-2000:]
    assert "%|" not in err[1] and "forward" not in err[1], err[1][-2000:]
    assert (tmp_path / "ev" / "eval.json").is_file()


def test_the_progress_helpers_keep_their_rundir_import_path():
    """They moved from rundir.py to progress.py: `from obliviate.rundir import progress_bar` (the path the stages,
    attacks and classifier modules use) names the same functions."""
    from obliviate import progress, rundir

    for name in ("is_main_rank", "progress_bar", "library_bars_off", "close_progress_bars"):
        assert getattr(rundir, name) is getattr(progress, name), name
        assert name in rundir.__all__
