"""The pipeline's process pool: independent jobs in spawned 1-thread workers that die with their parent, longest
job first (LPT scheduling, `job_cost`)."""

from __future__ import annotations

import time

from obliviate.pipeline.config import DemoConfig


def quiet_transformers() -> None:
    """Silence transformers' own "Loading weights" / "Writing model shards" bars: the demo has one display."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def exit_with_parent(parent_pid: int, interval: float = 1.0) -> None:
    """In a worker: a daemon thread that ends this process once `parent_pid` has died (e.g. kill -9 of the demo).

    A dead parent's children are re-parented, so `os.getppid()` no longer returns `parent_pid`."""
    import os
    import threading

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
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=init_worker, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(job): on_done for job, on_done in jobs}
        try:
            for f in as_completed(futures):
                futures[f](f.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


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
