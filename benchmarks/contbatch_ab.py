"""Greedy generation, static batches (transformers' `model.generate`) against continuous batching, alternating.

    python benchmarks/contbatch_ab.py --data /tmp/ou_parity/world --n 16 --batch-size 16 --reps 2
    python benchmarks/contbatch_ab.py --model smollm2-135m-instruct --data data/demo --splits forget10,retain90

The prompts are the first `--n` questions of each split (chat template, as the evaluation encodes them), at most
`--max-new-tokens` new tokens, `--mask-pad-ids` as under parity=open-unlearning. Each repetition runs the static
path and then the continuous one on the same prompts; prints the wall seconds of each, their ratio, the
generated tokens, and how many generations differ between the two (a near-tie in the argmax can flip under
the different batch shapes' float rounding).
"""

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)

import argparse
import time

from obliviate.data.format import encode_prompts
from obliviate.data.loading import load_split
from obliviate.evaluate import generate as G
from obliviate.models.loading import load_model


def run(model, tok, prompts, args, continuous: bool):
    ok = G.continuous_ok
    G.continuous_ok = ok if continuous else (lambda *a: False)
    try:
        t = time.perf_counter()
        _, ids = G.generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            mask_pad_ids=args.mask_pad_ids)
        return time.perf_counter() - t, ids
    finally:
        G.continuous_ok = ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", default="forget10,retain90,world_facts")
    ap.add_argument("--n", type=int, default=16, help="questions per split")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--mask-pad-ids", action="store_true")
    args = ap.parse_args()
    model, tok = load_model(args.model)
    model.eval()
    questions = [r["question"] for s in args.splits.split(",") for r in load_split(args.data, s)[:args.n]]
    prompts = encode_prompts(tok, questions, max_length=512)
    print(f"{len(prompts)} prompts, batch {args.batch_size}, <= {args.max_new_tokens} new tokens, "
          f"mask_pad_ids={args.mask_pad_ids}")
    for rep in range(args.reps):
        t_static, ids_static = run(model, tok, prompts, args, False)
        t_cont, ids_cont = run(model, tok, prompts, args, True)
        differ = [i for i, (a, b) in enumerate(zip(ids_static, ids_cont)) if a != b]
        print(f"rep {rep + 1}: static {t_static:.1f} s, continuous {t_cont:.1f} s, ratio {t_cont / t_static:.2f}; "
              f"tokens {sum(map(len, ids_static))} / {sum(map(len, ids_cont))}; {len(differ)} of {len(prompts)} "
              f"generations differ {differ}")
        for i in differ:
            a, b = ids_static[i], ids_cont[i]
            first = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"  row {i}: first difference at generated token {first} (lengths {len(a)} / {len(b)})")


if __name__ == "__main__":
    main()
