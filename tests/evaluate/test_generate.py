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


def _prompts(tok, world_dir):
    """34 prompts of 22–56 tokens whose generations end by EOS after 9–21 tokens, or at the 30-token cap."""
    from obliviate.data.loading import load_split

    recs = load_split(world_dir, "forget10") + load_split(world_dir, "world_facts") + load_split(world_dir,
                                                                                               "retain90")[:10]
    return [encode_prompt(tok, r["question"]) for r in recs]


def _static(monkeypatch, fn):
    """`fn()` with the continuous loop switched off: transformers' `model.generate` on static batches."""
    from obliviate.evaluate import generate as G

    with monkeypatch.context() as m:
        m.setattr(G, "continuous_ok", lambda *a: False)
        return fn()


def _count_admits(monkeypatch):
    """Record, for every prefill of the continuous loop, how many rows were decoding when it joined."""
    from obliviate.evaluate import generate as G

    running, admit = [], G.ContinuousBatch.admit

    def spy(self, *a, **k):
        running.append(len(self.rows))
        return admit(self, *a, **k)

    monkeypatch.setattr(G.ContinuousBatch, "admit", spy)
    return running


def test_continuous_batching_equals_static_batches(target, world_dir, monkeypatch):
    """Rows leave the batch at EOS or the cap and waiting prompts join running rows (refill): every generation
    equals transformers' static batches token for token, in input order, with the bar advanced per row."""
    model, tok = target
    prompts = _prompts(tok, world_dir)
    running = _count_admits(monkeypatch)
    texts, ids = generate(model, tok, prompts, max_new_tokens=30, batch_size=8)
    ref_texts, ref_ids = _static(monkeypatch, lambda: generate(model, tok, prompts, max_new_tokens=30, batch_size=8))
    assert ids == ref_ids and texts == ref_texts
    lengths = [len(g) for g in ids]
    assert min(lengths) < 15 and max(lengths) == 30  # rows end at different steps: by EOS and by the cap
    assert running[0] == 0 and any(0 < n < 8 for n in running[1:])  # prompts joined a batch still decoding
    assert len(running) > len(prompts) / 8


def test_continuous_batching_masks_pad_ids_inside_prompts(target, world_dir, monkeypatch):
    """mask_pad_ids=True (open-unlearning's mask ids != pad id): a pad id inside a prompt is masked and skipped by
    the positions, so the prompt decodes as without it; equal to static batches; unmasked, generations change."""
    model, tok = target
    prompts = _prompts(tok, world_dir)[:24]
    padded = [p[:-3] + [tok.pad_token_id] + p[-3:] if i % 3 == 0 else p for i, p in enumerate(prompts)]
    _, masked = generate(model, tok, padded, max_new_tokens=30, batch_size=8, mask_pad_ids=True)
    _, ref = _static(monkeypatch, lambda: generate(model, tok, padded, max_new_tokens=30, batch_size=8,
                                                   mask_pad_ids=True))
    assert masked == ref
    assert masked == generate(model, tok, prompts, max_new_tokens=30, batch_size=8, mask_pad_ids=True)[1]
    assert masked != generate(model, tok, padded, max_new_tokens=30, batch_size=8)[1]


def test_continuous_stop_string_equals_static(target, world_dir, monkeypatch):
    model, tok = target
    prompts = _prompts(tok, world_dir)[:12]
    texts, ids = generate(model, tok, prompts, max_new_tokens=30, batch_size=4, stop=" ")
    assert (texts, ids) == _static(monkeypatch, lambda: generate(model, tok, prompts, max_new_tokens=30,
                                                                 batch_size=4, stop=" "))
    assert all(" " not in t for t in texts) and any(len(g) < 9 for g in ids)
    assert all(g == tok(t, add_special_tokens=False)["input_ids"] for t, g in zip(texts, ids) if g)


def test_out_of_memory_in_the_loop_falls_back_to_static_batches(target, world_dir, monkeypatch):
    """A step that runs out of memory hands the unfinished rows (those in flight start again) to the static path."""
    from obliviate.evaluate import generate as G

    model, tok = target
    prompts = _prompts(tok, world_dir)
    ref = _static(monkeypatch, lambda: generate(model, tok, prompts, max_new_tokens=30, batch_size=8))
    step, calls = G.ContinuousBatch.step, []

    def failing(self, end):
        calls.append(1)
        if len(calls) == 20:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return step(self, end)

    monkeypatch.setattr(G.ContinuousBatch, "step", failing)
    static, orig = [], G.static_batch
    monkeypatch.setattr(G, "static_batch", lambda m, p, **k: static.append(len(p)) or orig(m, p, **k))
    assert generate(model, tok, prompts, max_new_tokens=30, batch_size=8) == ref
    assert len(calls) == 20 and 0 < sum(static) < len(prompts)


def test_cache_that_cannot_be_cut_by_rows_uses_static_batches(target, world_dir, monkeypatch):
    from obliviate.evaluate import generate as G

    model, tok = target
    prompts = _prompts(tok, world_dir)[:10]
    ref = _static(monkeypatch, lambda: generate(model, tok, prompts, max_new_tokens=12, batch_size=4))
    monkeypatch.setattr(G, "_plain_dynamic_cache", lambda cache: False)
    static, orig = [], G.static_batch
    monkeypatch.setattr(G, "static_batch", lambda m, p, **k: static.append(len(p)) or orig(m, p, **k))
    assert generate(model, tok, prompts, max_new_tokens=12, batch_size=4) == ref
    assert sum(static) == len(prompts)


def test_generation_config_with_logits_processors_uses_static_batches(target, monkeypatch):
    """A repetition penalty in the model's generation config changes greedy decoding inside `model.generate`:
    the continuous loop (which does not apply it) steps aside; so does a tokenizer without EOS."""
    from obliviate.evaluate.generate import continuous_ok

    model, tok = target
    assert continuous_ok(model, tok.eos_token_id, 8)
    assert not continuous_ok(model, None, 8)
    monkeypatch.setattr(model.generation_config, "repetition_penalty", 1.3)
    assert not continuous_ok(model, tok.eos_token_id, 8)
