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


FIELDS = ("nll_sum", "nll_mean", "n_tokens", "min_k", "min_k_pp", "extraction_strength", "exact_memorization")


def _assert_rows_equal(shared, unshared):
    assert len(shared) == len(unshared)
    for row_s, row_u in zip(shared, unshared):
        assert set(row_s) == set(FIELDS) == set(row_u)
        for key in ("n_tokens", "extraction_strength", "exact_memorization"):
            assert row_s[key] == row_u[key], key
        for key in ("nll_sum", "nll_mean", "min_k", "min_k_pp"):
            if row_u[key] is None:
                assert row_s[key] is None, key
            else:
                rel = 5e-5 if key == "min_k_pp" else 1e-5  # a z-score: rounding is amplified by 1/σ of the vocabulary
                assert row_s[key] == pytest.approx(row_u[key], rel=rel, abs=1e-6), key


def _world_pairs(world_dir, split, n):
    """(question, answer | paraphrase | each perturbation) pairs of `n` items, as the forward stage makes them."""
    from obliviate.data.loading import load_split

    pairs = []
    for r in load_split(world_dir, split)[:n]:
        pairs += [(r["question"], r["answer"]), (r["question"], r["paraphrased_answer"])]
        pairs += [(r["question"], p) for p in r["perturbed_answer"]]
    return pairs


def _no_full_pass(monkeypatch):
    """Make the full pass fail, so rows that still come back were computed by the shared-prompt pass."""
    from obliviate.evaluate import passes

    def boom(*args, **kwargs):
        raise AssertionError("the full pass ran: the shared-prompt pass was not used")

    monkeypatch.setattr(passes, "score_batch", boom)


def test_shared_prompt_pass_equals_full_pass_on_perturbed_world_items(target, world_dir, monkeypatch):
    """Every field of every row (answer, paraphrase, 5 perturbations per item) equals the full pass."""
    model, tok = target
    pairs = _world_pairs(world_dir, "forget10_perturbed", 4)
    assert len({q for q, _ in pairs}) == 4 and len(pairs) == 4 * 7
    unshared = forward_scores(model, tok, pairs, batch_size=8, share_prompts=False)
    _no_full_pass(monkeypatch)
    for bs in (16, 8, 3):  # several prompts per batch; a prompt's 7 answers split over batches
        _assert_rows_equal(forward_scores(model, tok, pairs, batch_size=bs), unshared)
    assert any(0 < row["exact_memorization"] < 1 for row in unshared)  # the comparison sees non-trivial values


def test_shared_prompt_pass_handles_prompts_of_different_length_and_keeps_order(target, monkeypatch):
    """Interleaved questions of different token lengths (left-padded prompts), rows in input order."""
    from obliviate.data.format import encode_prompt

    model, tok = target
    pairs = [("Who?", "Ann Lee."), ("Where was the author of the third novel born, and in which year?", "Paris."),
             ("Who?", "Bob."), ("Where was the author of the third novel born, and in which year?", "In Rome, 1901."),
             ("What?", "A long answer with several more tokens than the others have."), ("Who?", "X")]
    assert len({len(encode_prompt(tok, q)) for q, _ in pairs}) == 3
    unshared = forward_scores(model, tok, pairs, batch_size=4, share_prompts=False)
    alone = [forward_scores(model, tok, [pair], share_prompts=False)[0] for pair in pairs]
    _no_full_pass(monkeypatch)
    shared = forward_scores(model, tok, pairs, batch_size=4)
    _assert_rows_equal(shared, unshared)
    _assert_rows_equal(shared, alone)  # input order: each row is the one of its own pair scored alone


def test_shared_prompt_pass_keeps_truncation(target, monkeypatch):
    """max_length cuts as encode_qa does (answers to 1 token, the question left-truncated to 1 token): both rows
    share one prompt; an answer with no token left → the None row."""
    from obliviate.data.format import encode_prompt
    from obliviate.evaluate import passes

    model, tok = target
    q = "Where was the author of the third novel born?"
    pairs = [(q, "Paris, a long answer that gets cut."), (q, "Rome.")]
    cut = len(encode_prompt(tok, "")) + 2  # the template, one question token, one answer token
    unshared = forward_scores(model, tok, pairs, max_length=cut, share_prompts=False)
    with monkeypatch.context() as m:
        _no_full_pass(m)
        shared = forward_scores(model, tok, pairs, max_length=cut)
    _assert_rows_equal(shared, unshared)
    assert [row["n_tokens"] for row in shared] == [1, 1]

    def no_answer_for_empty(tokenizer, pairs, *, max_length, what=""):  # e.g. a tokenizer without EOS
        out = []
        for question, answer in pairs:
            ex = encode_qa(tokenizer, question, answer, max_length=max_length)
            n = ex["labels"].count(-100) if answer == "" else len(ex["labels"])
            out.append({"input_ids": ex["input_ids"][:n], "labels": ex["labels"][:n]})
        return out

    monkeypatch.setattr(passes, "encode_qas", no_answer_for_empty)
    pairs = [(q, ""), (q, "Rome."), ("Who?", "")]
    unshared = forward_scores(model, tok, pairs, share_prompts=False)
    _no_full_pass(monkeypatch)
    shared = forward_scores(model, tok, pairs)
    _assert_rows_equal(shared, unshared)
    assert shared[0] == shared[2] == {key: (0 if key == "n_tokens" else None) for key in FIELDS}
    assert shared[1]["n_tokens"] > 0 and shared[1]["nll_mean"] is not None


def test_model_without_shareable_cache_falls_back_to_full_pass(target, world_dir, monkeypatch):
    """A cache that is not a plain DynamicCache: the full pass gives every row (same values as share_prompts=False)."""
    from obliviate.evaluate import passes

    model, tok = target
    pairs = _world_pairs(world_dir, "forget10_perturbed", 2)
    calls = []
    monkeypatch.setattr(passes, "_plain_dynamic_cache", lambda cache: calls.append(cache) or False)
    rows = forward_scores(model, tok, pairs)
    assert calls, "the shared path was tried"
    _assert_rows_equal(rows, forward_scores(model, tok, pairs, share_prompts=False))


def test_packed_prompt_pass_equals_the_padded_pass_under_open_unlearning_masks(target, world_dir, monkeypatch):
    """parity=open-unlearning masks every pad-id token (`ids != pad id`), also inside prompts: the packed pass (each
    prompt once, its answers after it, one 4-D mask) gives the padded pass's rows, and really hides those tokens."""
    from obliviate.evaluate.passes import score_examples

    model, tok = target
    pairs = _world_pairs(world_dir, "forget10_perturbed", 3)
    examples = [encode_qa(tok, q, a, max_length=128) for q, a in pairs]
    pad = examples[0]["input_ids"][2]  # a token inside every prompt of the template: masked under the convention
    assert all(pad in ex["input_ids"][:5] for ex in examples)
    ou = "open-unlearning"
    padded = score_examples(model, examples, pad, batch_size=8, share_prompts=False, parity=ou)
    unmasked = score_examples(model, examples, pad, batch_size=8, share_prompts=False)
    assert padded[0]["nll_sum"] != pytest.approx(unmasked[0]["nll_sum"], rel=1e-3)  # the mask changes the scores
    _no_full_pass(monkeypatch)
    for bs in (16, 5):  # a prompt's answers in one packed row, or split over two
        packed = score_examples(model, examples, pad, batch_size=bs, parity=ou)
        for row_p, row_f in zip(packed, padded):
            assert set(row_p) == set(row_f)
            for key, value in row_f.items():
                assert row_p[key] == (value if value is None or key in ("n_tokens", "exact_memorization")
                                      else pytest.approx(value, rel=5e-5, abs=1e-6)), key
