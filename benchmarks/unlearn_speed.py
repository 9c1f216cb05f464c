"""Unlearning speed on CPU: seconds per optimiser step per recipe, the cost of cached vs live reference
log-probs (NPO/DPO), and forward passes per step (KL: one policy forward on the retain batch).

    python benchmarks/unlearn_speed.py                                   # builds a tiny world + model in a temp dir
    python benchmarks/unlearn_speed.py --model runs/demo/target --data data/demo --recipes ga+gd,npo+gd+sam

Seconds per step = (time of a 2+N-step run − time of a 2-step run) / N, so set-up (tokenizing, caching
reference log-probs, loading) cancels out.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings
from pathlib import Path

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)
import torch

from obliviate.data.loading import load_split
from obliviate.models.loading import load_model
from obliviate.models.logps import sequence_logps
from obliviate.unlearn import UnlearnConfig, unlearn
from obliviate.unlearn.batch import build_data, cache_ref_logps, collate, plan

RECIPES = "ga+gd,npo+gd,me+gd,idk+gd,idk+ap,dpo+kl,npo+gd+sam,npo+gd+rs,npo+gd+gp,npo+gd+cr,npo+gd+wa,rmu"


def timed(model_dir, data, recipe, steps, batch_size):
    model, tok = load_model(model_dir)
    forget, retain = load_split(data, "forget10"), load_split(data, "retain90")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unlearn(model, tok, forget, retain, UnlearnConfig(recipe=recipe, max_steps=steps, batch_size=batch_size,
                                                          warmup_epochs=0), progress=False)
    return time.perf_counter() - t


def count_forwards(model_dir, data, recipe, steps, batch_size):
    """Forward calls of the policy and of the reference model per training step: the difference between a
    2·steps and a steps run (set-up, reference caching and probes cancel)."""
    def counted(n):
        model, tok = load_model(model_dir)
        ref = copy.deepcopy(model)
        counts = {"policy": 0, "reference": 0}
        model.register_forward_pre_hook(lambda *a: counts.__setitem__("policy", counts["policy"] + 1))
        ref.register_forward_pre_hook(lambda *a: counts.__setitem__("reference", counts["reference"] + 1))
        forget, retain = load_split(data, "forget10"), load_split(data, "retain90")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            unlearn(model, tok, forget, retain, UnlearnConfig(recipe=recipe, max_steps=n, batch_size=batch_size,
                                                              reference="original"), ref_model=ref, progress=False)
        return counts

    a, b = counted(steps), counted(2 * steps)
    return (b["policy"] - a["policy"]) / steps, (b["reference"] - a["reference"]) / steps


def reference_cost(model_dir, data, steps, batch_size):
    """Caching log π_ref once vs a live reference forward on every step's forget batch."""
    model, tok = load_model(model_dir)
    ref = copy.deepcopy(model)
    forget = load_split(data, "forget10")
    d = build_data(tok, forget, None, set())
    t = time.perf_counter()
    cache_ref_logps(model, d)
    cached = time.perf_counter() - t
    schedule = plan(len(forget), None, batch_size=batch_size, micro_batches=steps, seed=0)
    t = time.perf_counter()
    with torch.no_grad():
        for mb in schedule:
            sequence_logps(ref, collate(d, mb).forget)
    live = time.perf_counter() - t
    params = sum(p.numel() for p in ref.parameters())
    return cached, live, params


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--recipes", default=RECIPES)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tmp = None
    if not args.model:
        from obliviate.data.world import write_world
        from obliviate.models.init import init_model

        tmp = tempfile.TemporaryDirectory()
        args.data = str(write_world(Path(tmp.name) / "world", "demo", 0))
        init_model("tiny", args.data, Path(tmp.name) / "model", seed=0)
        args.model = str(Path(tmp.name) / "model")
    print(f"model {args.model}  data {args.data}  batch {args.batch_size} forget (+{args.batch_size} retain)  "
          f"threads {torch.get_num_threads()}")
    print(f"{'recipe':14s} {'s/step':>8s} {'policy fwd/step':>16s} {'ref fwd/step':>13s}")
    for recipe in args.recipes.split(","):
        base = timed(args.model, args.data, recipe, 2, args.batch_size)
        full = timed(args.model, args.data, recipe, 2 + args.steps, args.batch_size)
        pol, ref = count_forwards(args.model, args.data, recipe, 3, args.batch_size)
        print(f"{recipe:14s} {(full - base) / args.steps:8.3f} {pol:16.1f} {ref:13.1f}", flush=True)
    cached, live, params = reference_cost(args.model, args.data, 5 * 5, args.batch_size)
    print(f"\nreference log-probs for NPO/DPO ({params / 1e6:.2f}M-param model, 5 epochs of forget10):")
    print(f"  cached once before training: {cached:.3f}s, no reference model kept")
    print(f"  live reference every step:   {live:.3f}s over 25 steps + a second model in memory")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
