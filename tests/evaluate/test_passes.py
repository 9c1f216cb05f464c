"""The one-pass forward scores equal a naive computation with a full log-softmax, and do not depend on batching."""

import pytest
import torch

from obliviate.data.format import encode_qa, pad_batch
from obliviate.evaluate.passes import forward_scores


def _naive(model, tok, q, a, k=0.4):
    """Unbatched, no padding, a materialised (T,V) log-softmax: the reference the chunked path must match."""
    ex = encode_qa(tok, q, a)
    ids = torch.tensor([ex["input_ids"]])
    labels = torch.tensor(ex["labels"])[1:]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    m = labels != -100
    lp, tgt = logp[m], labels[m]
    tok_lp = lp.gather(-1, tgt[:, None])[:, 0]
    p = lp.exp()
    mu = (p * lp).sum(-1)
    sigma = ((p * lp * lp).sum(-1) - mu * mu).sqrt()
    n = max(1, int(len(tok_lp) * k))
    z = (tok_lp - mu) / sigma
    preds = lp.argmax(-1)
    match = (preds == tgt).tolist()
    suffix = 0
    for ok in reversed(match):
        if not ok:
            break
        suffix += 1
    return {"nll_mean": -tok_lp.mean().item(), "nll_sum": -tok_lp.sum().item(), "n_tokens": len(tok_lp),
            "min_k": -tok_lp.sort().values[:n].mean().item(), "min_k_pp": -z.sort().values[:n].mean().item(),
            "exact_memorization": sum(match) / len(match), "extraction_strength": suffix / len(match)}


def test_forward_scores_match_naive_and_are_batch_invariant(target, world_dir):
    from obliviate.data.loading import load_split

    model, tok = target
    recs = load_split(world_dir, "forget10")[:5] + load_split(world_dir, "holdout10")[:3]
    pairs = [(r["question"], r["answer"]) for r in recs]
    batched = forward_scores(model, tok, pairs, batch_size=8)
    single = forward_scores(model, tok, pairs, batch_size=1)
    for (q, a), row_b, row_s in zip(pairs, batched, single):
        ref = _naive(model, tok, q, a)
        for key, value in ref.items():
            assert row_b[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
            assert row_s[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key


def test_answer_only_tokens_are_scored(target):
    """n_tokens = answer tokens + EOS (the prompt carries no score)."""
    model, tok = target
    (row,) = forward_scores(model, tok, [("Who?", "Ann Lee.")])
    ex = encode_qa(tok, "Who?", "Ann Lee.")
    assert row["n_tokens"] == sum(1 for x in ex["labels"] if x != -100)
    assert pad_batch([ex], 0)["labels"].shape[1] == len(ex["input_ids"])
