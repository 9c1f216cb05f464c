"""Issue 9, "the demo never crashes on its own presets": relearn k, missing values in plots/tables, worker
processes that outlive the parent, transformers' own progress bars, Forget Quality across seeds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate import ObliviateError


def test_relearn_k_is_clamped_below_the_forget_set(capsys):
    from obliviate.pipeline.config import DemoConfig, relearn_k_for

    assert relearn_k_for(DemoConfig(relearn_k=4), 8) == 4
    assert relearn_k_for(DemoConfig(relearn_k=8), 8) == 7
    assert "using k=7" in capsys.readouterr().out
    with pytest.raises(ObliviateError, match="needs at least 2"):
        relearn_k_for(DemoConfig(relearn_k=8), 1)


def _curve(unseen):
    return [{"step": s, "prob": 0.5, "prob_unseen": unseen, "rouge_l_recall": 0.4, "truth_ratio": 0.6,
             "forget_quality": None} for s in (0, 5)]


def test_relearn_plot_and_table_tolerate_missing_values():
    from obliviate.attack.registry import ATTACKS

    target = {"splits": {"forget": {"means": {"prob": 0.9}}}, "aggregates": {}}
    groups = {"ga+gd": [{"curve": _curve(None)}], "npo+gd": [{"curve": _curve(0.3)}]}
    fig = ATTACKS["relearn"].plot(groups, target)  # the old code: TypeError NoneType + float
    assert fig is not None
    headers, rows = ATTACKS["relearn"].table(groups)
    assert [r[3] for r in rows if r[0] == "ga+gd"] == ["—", "—"]  # a missing value is shown as missing


def test_forget_quality_across_seeds_is_median_and_range_and_retain_row_is_a_sanity_check():
    from obliviate.report.card import across_seeds, headline

    assert across_seeds("Forget Quality", [0.01, 0.5, 0.9]) == "0.500 [0.010–0.900]"
    assert across_seeds("Forget Quality", [None]) == "—"
    assert across_seeds("forget Prob", [0.2, 0.4]).startswith("0.300 ± ")
    ev = lambda fq: {"aggregates": {"forget_quality": fq}, "splits": {}}  # noqa: E731
    data = {"demo": {"retain_vs_itself": {"forget_quality": 1.0}}, "target": ev(1e-5), "retain": ev(None),
            "recipes": {"npo+gd": [{"eval": ev(p)} for p in (0.02, 0.9, 0.8)]}}
    headers, rows = headline(data)
    assert rows[1][2] == "1.000 (vs itself: sanity check)"
    fq = rows[2][2]
    assert fq == "0.800 [0.020–0.900]" and "±" not in fq  # the old mean ± t-interval: 0.573 ± 1.08, outside [0, 1]


def test_transformers_bars_are_silenced():
    from transformers.utils import logging as hf_logging

    from obliviate.pipeline.pool import quiet_transformers

    hf_logging.enable_progress_bar()
    quiet_transformers()
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # exited, waiting to be reaped by its new parent


def test_worker_exits_when_the_demo_process_is_killed(tmp_path):
    """A worker initialised like the demo's (`init_worker`) exits once its parent is killed with SIGKILL."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    ready = tmp_path / "ready"
    child_code = ("import os, sys, time, pathlib; from obliviate.pipeline.pool import init_worker, exit_with_parent; "
                  "init_worker(int(sys.argv[1])); exit_with_parent(int(sys.argv[1]), 0.1); "
                  f"pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(300)")
    parent_code = ("import os, subprocess, sys, time; "
                   f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}, str(os.getpid())]); "
                   "print(c.pid, flush=True); time.sleep(120)")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    deadline = time.time() + 240  # the child imports torch first (slow on a loaded machine)
    while time.time() < deadline and not ready.exists():
        time.sleep(0.2)
    assert ready.exists() and not _gone(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30
    while time.time() < deadline and not _gone(child):
        time.sleep(0.2)
    alive = not _gone(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive
