"""torch.compile (inductor) against eager for the training forward + backward, A/B in one process.

    TORCHINDUCTOR_CACHE_DIR=/tmp/ind python benchmarks/compile_ab.py --model smollm2-135m-instruct --reps 3

The bench workload's first `--batches` effective batches (demo world forget10/retain90, batch 4 + 4, max_length
128, the run's own collator): each pass is the answer-only log-prob forward (`models.logps.sequence_logps`) of the
forget and the retain view and the backward of −forget + retain NLL sums (the ga+gd / npo+gd shape of a step,
without the optimiser). The compiled arm is `torch.compile(model)` over the same parameters. Its first pass per
batch shape is the compile (timed separately); then the arms alternate `--reps` times. Prints the compile
seconds, the per-pass medians, their ratio, the break-even number of passes, and the largest loss and gradient
differences against eager. Run it twice with the same TORCHINDUCTOR_CACHE_DIR for the warm-cache compile time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def batches(model_name: str, n: int):
    from obliviate.data.loading import load_split
    from obliviate.data.world import write_world
    from obliviate.models.loading import load_model
    from obliviate.unlearn.batch import build_data, collate, plan

    with tempfile.TemporaryDirectory() as t:
        world = write_world(Path(t) / "world", "demo", 0)
        forget, retain = load_split(world, "forget10"), load_split(world, "retain90")
    model, tok = load_model(model_name)
    data = build_data(tok, forget, retain, {"retain"}, seed=0, max_length=128, recipe="ga+gd")
    idx = plan(len(data.forget), len(data.retain), batch_size=4, batches=n, seed=0)
    return model, [collate(data, i) for i in idx]


def step(fwd, batch) -> tuple[float, float]:
    """One forward + backward; (seconds, loss)."""
    from obliviate.models.logps import sequence_logps

    t0 = time.perf_counter()
    loss = -sequence_logps(fwd, batch.forget).sum().sum() - sequence_logps(fwd, batch.retain).sum().sum()
    loss.backward()
    return time.perf_counter() - t0, float(loss.detach())


def grads(model) -> list[torch.Tensor]:
    out = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dynamic", choices=["none", "true", "false"], default="none")
    args = ap.parse_args()
    model, bs = batches(args.model, args.batches)
    model.train()
    compiled = torch.compile(model, dynamic={"none": None, "true": True, "false": False}[args.dynamic])
    compile_s, dl, dg = [], 0.0, 0.0
    for b in bs:  # first compiled pass per shape = the compile; compared with eager for the numerics
        t_c, l_c = step(compiled, b)
        g_c = grads(model)
        _, l_e = step(model, b)
        g_e = grads(model)
        compile_s.append(t_c)
        dl = max(dl, abs(l_c - l_e) / abs(l_e))
        dg = max(dg, max(float((a - e).abs().max() / e.abs().max().clamp(min=1e-30)) for a, e in zip(g_c, g_e)))
    times = {"eager": [], "compiled": []}
    for _ in range(args.reps):
        for name, fwd in (("eager", model), ("compiled", compiled)):
            for b in bs:
                times[name].append(step(fwd, b)[0])
                model.zero_grad(set_to_none=True)
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    first = compile_s[0] - c
    print(f"first compiled pass per batch shape (compile + run) s: {', '.join(f'{x:.1f}' for x in compile_s)}")
    print(f"per pass median s: eager {e:.3f} (min {min(times['eager']):.3f}), compiled {c:.3f} "
          f"(min {min(times['compiled']):.3f}); compiled ÷ eager {c / e:.3f}")
    print(f"break-even: {first / (e - c):.0f} passes" if e > c else "break-even: never (compiled is not faster)")
    print(f"numerics vs eager: loss rel diff {dl:.2e}, gradient max abs diff / max abs {dg:.2e}")


if __name__ == "__main__":
    main()
