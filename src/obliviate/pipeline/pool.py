"""The pipeline's process pool: independent jobs in spawned 1-thread workers that die with their parent, longest
job first (LPT scheduling, `job_cost`); `call_in_worker`, one call in a spawned process tied to its parent.

Workers are tied to their parent both ways: a worker that dies (kill -9, OOM) is an error in the parent within a
second or two (the pool's BrokenProcessPool; `call_in_worker` polls the pipe and the process with a timeout, never a
bare blocking get), and a parent that dies ends its workers (`exit_with_parent`: PR_SET_PDEATHSIG on Linux, and on
every platform a thread that exits once the parent pid has changed)."""

from __future__ import annotations

import os
import sys
import time

from obliviate.pipeline.config import DemoConfig


def quiet_transformers() -> None:
    """Silence transformers' own "Loading weights" / "Writing model shards" bars: the demo has one display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the polling thread below still ends the worker


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """In a worker: end this process once `parent_pid` has died (e.g. kill -9 of the demo): the kernel's death
    signal on Linux, and a daemon thread everywhere (a dead parent's children are re-parented, so `os.getppid()` no
    longer returns `parent_pid`; also covers a parent that died before the signal was armed)."""
    import threading

    die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(interval)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def init_worker(parent_pid: int) -> None:
    import torch

    torch.set_num_threads(1)  # two 1-thread processes beat one 2-thread process on these small matrices
    quiet_transformers()
    exit_with_parent(parent_pid)


def run_jobs(jobs: list[tuple], workers: int) -> None:
    """Run independent jobs, (picklable callable, on_done(result)) pairs, in `workers` spawned processes in the
    order given (a worker takes the next job when it is free), or in-process when 1."""
    if workers <= 1 or len(jobs) <= 1:
        for job, on_done in jobs:
            on_done(job())
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from obliviate import ObliviateError

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(job): on_done for job, on_done in jobs}
        try:
            for f in as_completed(futures):
                futures[f](f.result())
        except BrokenProcessPool:  # a worker was killed (kill -9, out of memory): the pool noticed at once
            raise ObliviateError("a worker process died (killed or out of memory); the stages finished before it "
                                 "are kept, run again to continue") from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _call(parent_pid: int, conn, fn, args) -> None:
    exit_with_parent(parent_pid)
    try:
        conn.send((True, fn(*args)))
    except Exception as e:  # reported, never swallowed: the parent raises it
        conn.send((False, f"{type(e).__name__}: {e}"))
    conn.close()


def call_in_worker(fn, *args, what: str = "worker", poll: float = 0.5):
    """`fn(*args)` in a spawned process tied to this one; its return value, or an ObliviateError if it raised or
    died (checked every `poll` seconds: the process's exit code, then the pipe)."""
    import multiprocessing

    from obliviate import ObliviateError

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_call, args=(os.getpid(), send, fn, args), daemon=True)
    proc.start()
    send.close()  # the child holds the only write end: its death is EOF here
    try:
        while not receive.poll(poll):
            if not proc.is_alive() and not receive.poll(0):
                raise ObliviateError(f"{what} (pid {proc.pid}) died with exit code {proc.exitcode} before it "
                                     "reported; nothing of it was saved")
        try:
            ok, value = receive.recv()
        except EOFError:
            proc.join(5)
            raise ObliviateError(f"{what} (pid {proc.pid}) died with exit code {proc.exitcode} before it "
                                 "reported; nothing of it was saved") from None
    finally:
        if proc.is_alive():
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        proc.join()
    if not ok:
        raise ObliviateError(f"{what} failed: {value}")
    return value


# Seconds of each part of a job on SmolLM2-135M with one thread (docs/reproduction.md, stage times), in units of
# one evaluation; only their order matters (longest job first).
JOB_COSTS = {"unlearn": 1.5, "eval": 1.0, "relearn_train": 0.5, "relearn_point": 0.45, "jailbreak": 1.5,
             "continual_task": 1.8}


def job_cost(cfg: DemoConfig, *, recipe: str = "", continual: bool = False) -> float:
    """Rough cost of a chain job (unlearn, evaluate, attack `recipe`) or of a continual job (JOB_COSTS)."""
    c = JOB_COSTS
    if continual:
        return c["continual_task"] * cfg.continual_tasks
    cost = c["unlearn"] + c["eval"]
    if cfg.attacked(recipe):
        cost += ("relearn" in cfg.attacks) * (c["relearn_train"] + c["relearn_point"] * len(cfg.relearn_steps))
        cost += ("jailbreak" in cfg.attacks) * c["jailbreak"]
    return cost


def by_cost(jobs: list[tuple[float, object, object]]) -> list[tuple]:
    """(cost, job, on_done) triples as run_jobs pairs, longest first: no worker idles at the end while the other
    finishes a long job."""
    return [(job, on_done) for _, job, on_done in sorted(jobs, key=lambda j: -j[0])]
