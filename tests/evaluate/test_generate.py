"""Batched left-padded greedy generation with a KV cache equals a plain token-by-token greedy loop."""

import torch

from obliviate.data.format import encode_prompt
from obliviate.evaluate.generate import generate


def _greedy_loop(model, tok, prompt, max_new):
    """No padding, no cache: argmax one token at a time until EOS."""
    ids = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new):
            nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            ids.append(nxt)
            out.append(nxt)
    return out


def test_batched_generation_equals_greedy_loop(target, world_dir):
    from obliviate.data.loading import load_split

    model, tok = target
    qs = [r["question"] for r in load_split(world_dir, "forget10")[:3] + load_split(world_dir, "world_facts")[:3]]
    prompts = [encode_prompt(tok, q) for q in qs]
    texts, ids = generate(model, tok, prompts, max_new_tokens=20, batch_size=6)
    for p, t, g in zip(prompts, texts, ids):
        ref = _greedy_loop(model, tok, p, 20)
        assert g == ref
        assert t == tok.decode(ref, skip_special_tokens=True).strip()
        assert tok.eos_token_id not in g


def test_stop_string_cuts_text(target):
    model, tok = target
    texts, _ = generate(model, tok, [encode_prompt(tok, "What is the capital of France?")], max_new_tokens=8,
                        stop=" ")
    assert " " not in texts[0]
