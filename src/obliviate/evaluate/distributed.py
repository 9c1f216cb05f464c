"""Evaluation over several processes (`accelerate launch`): items split, per-item results gathered.

    rows = split_map(lambda part: score(model, part), items)   # same list, same order as one process
    rows = map_batches(run, order, batch_size, n)             # whole batches split: bit-identical results

Each process computes a contiguous share of the items (`PartialState.split_between_processes`); the per-item
results are gathered (`accelerate.utils.gather_object`) onto every process in input order, so the main process
writes exactly what one process would have computed, and the others stay in step (same cache decisions).
One process: `fn(items)` directly.

`map_batches` splits whole batches, not items: every item is computed in the batch (same neighbours, same
padding) it has in one process, so the results are bit-identical to one process's (batch shapes change
floating-point reduction order: splitting items moved min-k++ scores by ~1e-5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def process_state():
    """accelerate's shared process state (one process unless launched with `accelerate launch`)."""
    from obliviate.models.device import default_device

    default_device()  # creates the state with obliviate's CPU/CUDA choice
    from accelerate import PartialState

    return PartialState()


def is_main_process() -> bool:
    return process_state().is_main_process


def split_map(fn: Callable[[list], list], items: Sequence[Any]) -> list:
    """`fn(items)` computed in shares across processes; the per-item results in input order on every process."""
    state = process_state()
    items = list(items)
    if state.num_processes == 1 or not items:
        return fn(items)
    from accelerate.utils import gather_object

    with state.split_between_processes(list(range(len(items)))) as idx:
        local = fn([items[i] for i in idx]) if idx else []
    if len(local) != len(idx):
        raise RuntimeError(f"split_map: {len(local)} results for {len(idx)} items")
    pairs = gather_object(list(zip(idx, local)))
    out: list = [None] * len(items)
    for i, value in pairs:
        out[i] = value
    return out


def map_batches(run: Callable[[list[int]], list], order: list[int], batch_size: int, n: int) -> list:
    """Per-item results (a list of `n`, by item index) of `run(idx) -> [result per index]` over the consecutive
    `batch_size` chunks of `order`, the chunks split across processes. A chunk that runs out of memory is
    retried in halves (`models.microbatch.in_batches`)."""
    from obliviate.models.microbatch import in_batches

    chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

    def local(part: list[list[int]]) -> list[list]:
        out = []
        for chunk in part:
            res: list = []
            in_batches(lambda sub: res.extend(run(sub)), chunk, batch_size)
            out.append(res)
        return out

    rows: list = [None] * n
    for chunk, res in zip(chunks, split_map(local, chunks)):
        for i, value in zip(chunk, res):
            rows[i] = value
    return rows
