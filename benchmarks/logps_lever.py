"""The answer-only `lm_head` lever, A/B in one process (alternating, so a shared machine slows both alike):
a training forward+backward of `sequence_logps` with full B×T×V logits (the old path, still used by ME/KL)
vs logits at answer positions only, and a no-grad pass over the forget set (the probes / reference cache)
in input order with full logits vs length-sorted with answer-only logits.

    python benchmarks/logps_lever.py --model smollm2-135m-instruct --reps 5
"""

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from obliviate.data.format import pad_batch
from obliviate.data.loading import load_split
from obliviate.models.loading import load_model
from obliviate.models.logps import sequence_logps
from obliviate.unlearn.batch import build_data, example_logps


def full_then(model, batch):
    return sequence_logps(model, batch, return_logits=True)  # the pre-lever path: every position's logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", default=None)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.data is None:
        from obliviate.data.world import write_world

        args.data = str(write_world(Path(tmp.name) / "world", "demo", 0))
    model, tok = load_model(args.model)
    data = build_data(tok, load_split(args.data, "forget10"), None, set(), max_length=128)
    batch = pad_batch(data.forget[: args.batch_size], data.pad_id)
    n_ans = int((batch["labels"][:, 1:] != -100).sum())
    print(f"{args.model}: batch {tuple(batch['input_ids'].shape)}, {n_ans} answer positions of "
          f"{int(batch['attention_mask'].sum())} tokens, {torch.get_num_threads()} threads")

    def train(path):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        out = path(model, batch)
        (-out.mean().mean()).backward()
        return time.perf_counter() - t

    def probe_old():
        t = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(data.forget), 32):
                full_then(model, pad_batch(data.forget[i:i + 32], data.pad_id)).sum()
        return time.perf_counter() - t

    def probe_new():
        t = time.perf_counter()
        example_logps(model, data.forget, data.pad_id)
        return time.perf_counter() - t

    train(full_then), train(sequence_logps)  # warm-up
    rows = {"train fwd+bwd, full logits": [], "train fwd+bwd, answer-only": [], "forget pass, old": [],
            "forget pass, new": []}
    for _ in range(args.reps):
        rows["train fwd+bwd, full logits"].append(train(full_then))
        rows["train fwd+bwd, answer-only"].append(train(sequence_logps))
        rows["forget pass, old"].append(probe_old())
        rows["forget pass, new"].append(probe_new())
    for name, v in rows.items():
        print(f"{name:30s} median {statistics.median(v):7.3f}s  min {min(v):7.3f}s  max {max(v):7.3f}s")
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"answer-only / full, training pass: {med['train fwd+bwd, answer-only'] / med['train fwd+bwd, full logits']:.2f}")
    print(f"new / old, forget pass (probe, reference cache): {med['forget pass, new'] / med['forget pass, old']:.2f}")


if __name__ == "__main__":
    main()
