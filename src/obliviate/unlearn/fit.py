"""The micro-batch of an unlearning run: the config's, or the largest that fits (`models.microbatch`).

The effective batch (`batch_size`) is what the losses average over; the micro-batch only decides how many of
its items go through one forward and backward. `micro_batch=auto` tries (CUDA) or estimates (CPU, against
`max_memory`) one step of the run's own recipe — objective, regulariser and smoother — on the longest items.
"""

from __future__ import annotations

import math

import torch

from obliviate import ObliviateError
from obliviate.models.microbatch import choose_micro_batch, resolve_micro_batch
from obliviate.unlearn.batch import BatchIndices, collate


def accumulation(batch_size: int, micro_batch: int, world: int = 1) -> int:
    """Micro-batches per optimiser step (per process) of a full effective batch."""
    return math.ceil(batch_size / (micro_batch * world))


def micro_batch_of(r, batch_size: int) -> int:
    """Items per forward and backward, per process, for the run `r` (setup._Run) with effective batch `batch_size`:
    the whole batch when the objective's loss is not a sum over micro-batches, else fixed by `micro_batch` /
    `grad_accum`, or the largest that fits."""
    cfg, world = r.cfg, r.acc.num_processes
    if batch_size % world:
        raise ObliviateError(f"batch_size={batch_size} is not divisible by the {world} processes")
    per_process = batch_size // world
    whole = r.objective.whole_batch(cfg) if r.objective.whole_batch is not None else None
    if whole:
        fixed = resolve_micro_batch(per_process, cfg.micro_batch, cfg.grad_accum)
        if fixed is not None and fixed != per_process:
            raise ObliviateError(f"{whole} takes one loss of the whole batch, not a sum over micro-batches: it needs "
                                 f"micro_batch={per_process} (= batch_size), not {fixed}")
        return per_process
    micro = choose_micro_batch(per_process, cfg.micro_batch, cfg.grad_accum, trial=lambda m: trial_step(r, m),
                               model=r.model, device=r.acc.device, max_memory=cfg.max_memory,
                               copies=r.smoother.copies)
    if world > 1:  # every process must run the same micro-batches (DDP reduces each backward): the smallest
        micro = int(r.acc.gather(torch.tensor([micro], device=r.acc.device)).min())
    return micro


def _longest(examples: list[dict], m: int) -> list[int]:
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    return [order[i % len(order)] for i in range(m)]


def trial_step(r, m: int) -> None:
    """One step's forwards and backwards of the recipe on the m longest forget items (paired with the m longest
    retain items); the weights, the RNG and `.grad` are left as they were."""
    data = r.data
    batch = collate(data, BatchIndices(_longest(data.forget, m), _longest(data.retain, m) if data.retain else None))
    batch = batch.to(r.acc.device)
    devices = [r.acc.device] if r.acc.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            r.smoother.grad(r.step_closure(batch, [batch], seed=0))
        finally:
            r.opt.zero_grad(set_to_none=True)
