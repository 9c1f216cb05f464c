"""How a training run splits its effective batch into micro-batches: chosen to fit memory, or given.

    micro = resolve_micro_batch(32, "auto", None)        # None: choose with fit_micro_batch
    micro = fit_micro_batch(32, trial, budget=memory_budget(None))

The effective batch (`batch_size`, the papers' 32) is what every loss averages over; it is processed as
`grad_accum = batch_size / micro_batch` micro-batches whose gradients add up to the effective batch's (each loss
normalises by the effective batch's counts, never the micro-batch's). Only memory depends on the split.

`micro_batch="auto"` takes the largest candidate (batch_size, then about halving, each a divisor of batch_size)
that fits: on CUDA by trying a step and halving on out-of-memory (accelerate's `find_executable_batch_size`); on
CPU, where running out of memory is fatal rather than an exception, by estimating the peak from a one-item
trial step against a memory budget (`max_memory`, default MEMORY_FRACTION of the memory available at start).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

import torch

from obliviate import ObliviateError

MEMORY_FRACTION = 0.5  # of the memory available at start: the default CPU budget. It was 1/8 until
# 2026-12-05: on a 24 GiB machine with 15 GiB free that is 1.9 GiB, below SmolLM2-135M's weights, gradients and
# AdamW moments (2.2 GiB) alone, so every run took 1 item per pass at 1.38x the CPU (docs/speed.md); half of what
# is free still leaves the other half to the rest of the machine
BACKWARD_FACTOR = 2.0  # peak ≈ BACKWARD_FACTOR × the live tensors saved for backward (activation gradients)
GIB = 2 ** 30
WEIGHT_COPIES = 3  # weight-sized buffers a run adds once it trains: the gradient and AdamW's two moments


def candidates(batch_size: int) -> list[int]:
    """batch_size, then each time the largest divisor of batch_size at most half the previous: 32 → 32 16 8 4 2 1,
    24 → 24 12 6 3 1, 20 → 20 10 5 2 1."""
    out = [batch_size]
    while out[-1] > 1:
        out.append(max(d for d in range(1, out[-1] // 2 + 1) if batch_size % d == 0))
    return out


def resolve_micro_batch(batch_size: int, micro_batch, grad_accum: int | None) -> int | None:
    """The micro-batch fixed by the config (`micro_batch=N`, or `grad_accum=G` → batch_size / G), or None for auto.
    An impossible combination is a one-line error."""
    auto = micro_batch in (None, "auto")
    if not auto and batch_size % micro_batch:
        raise ObliviateError(f"micro_batch={micro_batch} does not divide batch_size={batch_size} (the effective "
                             f"batch); choose one of {', '.join(map(str, candidates(batch_size)))}")
    if grad_accum is not None and batch_size % grad_accum:
        raise ObliviateError(f"grad_accum={grad_accum} does not divide batch_size={batch_size} (the effective batch)")
    if not auto and grad_accum is not None and micro_batch * grad_accum != batch_size:
        raise ObliviateError(f"micro_batch={micro_batch} × grad_accum={grad_accum} ≠ batch_size={batch_size}; give "
                             "one of micro_batch and grad_accum (the other follows)")
    if not auto:
        return micro_batch
    return batch_size // grad_accum if grad_accum is not None else None


def check_micro_batch(value) -> int | str:
    """`micro_batch` as given in a config: "auto", or an integer >= 1 (also as text, from YAML or the CLI)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value != "auto" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ObliviateError(f"micro_batch must be auto or an integer >= 1, got {value!r}")
    return value


def memory_budget(max_memory: float | None) -> int:
    """Bytes the process may reach at peak: `max_memory` GiB, or MEMORY_FRACTION of the memory available now."""
    import psutil

    if max_memory is not None:
        return int(max_memory * GIB)
    return int(MEMORY_FRACTION * psutil.virtual_memory().available)


@contextlib.contextmanager
def saved_tensor_peak(model: torch.nn.Module):
    """Track the peak bytes of tensors autograd holds for backward (one count per storage, `model`'s weights
    left out) while the block runs; yields a dict whose "peak" is filled in."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    live: dict[int, list] = {}  # storage pointer -> [references, bytes]
    state = {"now": 0, "peak": 0}

    def release(ptr):
        entry = live.get(ptr)
        if entry is not None:
            entry[0] -= 1
            if entry[0] == 0:
                state["now"] -= entry[1]
                del live[ptr]

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr in weights:
            return t
        if ptr in live:
            live[ptr][0] += 1
        else:
            live[ptr] = [1, t.untyped_storage().nbytes()]
            state["now"] += live[ptr][1]
            state["peak"] = max(state["peak"], state["now"])
        weakref.finalize(t, release, ptr)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield state


def estimated_peak(per_item: int, micro: int, *, static: int) -> int:
    """Peak bytes of a step at `micro` items: what does not depend on the split plus the activations."""
    return static + int(BACKWARD_FACTOR * per_item * micro)


def fit_micro_batch(batch_size: int, trial: Callable[[int], None], *, model: torch.nn.Module, device: torch.device,
                    budget: int, static: int = 0) -> int:
    """The largest of `candidates(batch_size)` whose step fits. `trial(m)` runs one step's forwards and
    backwards on m of the longest items (gradients cleared by the caller's next zero_grad).

    CUDA: try m and halve on out-of-memory (accelerate's find_executable_batch_size). CPU: one trial at m = 1
    measures the tensors saved for backward per item; the largest m whose estimated peak (`static`, the bytes
    that do not depend on the split, + activations) stays within `budget` bytes, else 1."""
    steps = candidates(batch_size)
    if device.type != "cpu":
        from accelerate.utils import find_executable_batch_size

        tried = iter(steps[1:])

        def attempt(m):
            trial(m)
            return m

        return find_executable_batch_size(attempt, starting_batch_size=steps[0],
                                          reduce_batch_size_fn=lambda: next(tried, 0))()
    with saved_tensor_peak(model) as saved:
        trial(1)
    return next((m for m in steps if estimated_peak(saved["peak"], m, static=static) <= budget), 1)


def choose_micro_batch(batch_size: int, micro_batch, grad_accum: int | None, *, trial: Callable[[int], None],
                       model: torch.nn.Module, device: torch.device, max_memory: float | None,
                       copies: int = 0) -> int:
    """The config's micro-batch (`resolve_micro_batch`), else the largest that fits (`fit_micro_batch`); on CPU
    the static part is what the process holds now plus the gradient, AdamW's moments and `copies` more
    weight-sized buffers (a smoother's), all still to be allocated."""
    fixed = resolve_micro_batch(batch_size, micro_batch, grad_accum)
    if fixed is not None:
        return fixed
    import psutil

    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    static = psutil.Process().memory_info().rss + (WEIGHT_COPIES + copies) * trainable
    return fit_micro_batch(batch_size, trial, model=model, device=device, budget=memory_budget(max_memory),
                           static=static)


def in_batches(fn: Callable[[list], None], items: list, batch_size: int) -> None:
    """`fn(chunk)` on consecutive chunks of at most `batch_size` items. A chunk that runs out of device memory
    (accelerate's `should_reduce_batch_size`: CUDA, XPU, MPS or CPU allocator errors) is retried at half the size,
    which the later chunks keep: evaluation's scoring and generation batches fit the device."""
    from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

    k = 0
    while k < len(items):
        chunk = items[k:k + batch_size]
        try:
            fn(chunk)
        except Exception as e:
            if len(chunk) == 1 or not should_reduce_batch_size(e):
                raise
            clear_device_cache(garbage_collection=True)
            batch_size = max(1, len(chunk) // 2)
            continue
        k += len(chunk)
