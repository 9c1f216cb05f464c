"""Evaluation speed: items/s of the one-pass forward scoring and of batched generation, and the one-pass
design against a naive multi-pass (one forward and one full B×T×V log-softmax per metric, as
open-unlearning does).

    python benchmarks/eval_speed.py                                   # tiny model, demo world (built in a temp dir)
    python benchmarks/eval_speed.py --model runs/target --data data/demo --split forget10_perturbed
    python benchmarks/eval_speed.py --model smollm2-135m-instruct --n 32

Speed does not depend on training, so without --model a freshly initialised model of --size is used.
"""

import obliviate  # noqa: F401  (OMP_WAIT_POLICY before torch)

import argparse
import tempfile
import time
from pathlib import Path

import torch

from obliviate.data.format import encode_prompt, encode_qa, pad_batch
from obliviate.data.loading import load_split
from obliviate.evaluate.generate import generate
from obliviate.evaluate.passes import forward_scores


def naive_multi_pass(model, tok, pairs, batch_size, k=0.4):
    """One forward pass per metric (NLL, Min-K%, Min-K%++, ES, EM), each with a full log-softmax."""
    examples = [encode_qa(tok, q, a) for q, a in pairs]
    results = []
    for metric in ("nll", "min_k", "min_k_pp", "extraction_strength", "exact_memorization"):
        for start in range(0, len(examples), batch_size):
            batch = pad_batch(examples[start:start + batch_size], tok.pad_token_id)
            with torch.no_grad():
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logp = torch.log_softmax(logits[:, :-1].float(), -1)  # B×T×V kept
            labels = batch["labels"][:, 1:]
            mask = labels != -100
            tok_lp = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * mask
            if metric == "min_k_pp":
                p = logp.exp()
                mu = (p * logp).sum(-1)
                results.append(((tok_lp - mu) / ((p * logp * logp).sum(-1) - mu * mu).clamp(min=1e-12).sqrt()).sum())
            elif metric in ("extraction_strength", "exact_memorization"):
                results.append(((logp.argmax(-1) == labels) & mask).sum())
            else:
                results.append(tok_lp.sum())
    return results


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--size", default="tiny", help="model size when no --model (micro | tiny | small)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--split", default="forget10_perturbed")
    ap.add_argument("--n", type=int, default=64, help="items")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    data = args.data
    if data is None:
        from obliviate.data.world import write_world

        data = write_world(Path(tmp.name) / "world", "demo", 0)
    if args.model is None:
        from obliviate.models.init import init_model

        model, tok = init_model(args.size, data, Path(tmp.name) / "model")
        model.eval()
        name = f"fresh {args.size} model"
    else:
        from obliviate.models.loading import load_model

        model, tok = load_model(args.model)
        name = args.model
    records = load_split(data, args.split)[: args.n]
    # every sequence the suite scores per item: answer, paraphrase, perturbations
    pairs = [(r["question"], a) for r in records
             for a in [r["answer"]] + ([r["paraphrased_answer"]] if r.get("paraphrased_answer") else [])
             + list(r.get("perturbed_answer", []))]
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, vocab {len(tok)}, "
          f"{len(records)} items = {len(pairs)} sequences, batch {args.batch_size}, {args.threads} threads")
    forward_scores(model, tok, pairs[: args.batch_size], batch_size=args.batch_size)  # warm-up
    t_one = timed(lambda: forward_scores(model, tok, pairs, batch_size=args.batch_size))
    t_naive = timed(lambda: naive_multi_pass(model, tok, pairs, args.batch_size))
    print(f"forward, one pass (all likelihood metrics): {len(pairs) / t_one:8.1f} sequences/s "
          f"({len(records) / t_one:.1f} items/s)")
    print(f"forward, naive multi-pass (5 passes):       {len(pairs) / t_naive:8.1f} sequences/s "
          f"({len(records) / t_naive:.1f} items/s)  -> one pass is {t_naive / t_one:.1f}x faster")
    prompts = [encode_prompt(tok, r["question"]) for r in records]
    t_gen = timed(lambda: generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
    t_gen1 = timed(lambda: generate(model, tok, prompts[:8], max_new_tokens=args.max_new_tokens, batch_size=1))
    print(f"generation, batched (left padding, KV cache): {len(prompts) / t_gen:6.1f} items/s")
    print(f"generation, one item at a time:               {8 / t_gen1:6.1f} items/s")


if __name__ == "__main__":
    main()
