"""Answer-position-only log-probs (`logits_to_keep`) equal the full-logits shift-and-gather, values and gradients."""

import pytest
import torch

from obliviate.data.format import encode_qa, pad_batch
from obliviate.models import logps
from obliviate.models.loading import load_model
from obliviate.models.logps import (MIN_SHARED, can_pack, gather_token_logps, selective_logps, sequence_logps,
                                    pack_prefix)


def test_answer_only_logps_equal_full_logits_and_gradients(base_dir):
    model, tok = load_model(base_dir)
    batch = pad_batch([encode_qa(tok, "Who wrote it?", "Ann Lee."), encode_qa(tok, "Where?", "In a small town, far.")],
                      tok.pad_token_id)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    want, mask = gather_token_logps(full, batch["labels"])
    g_want = torch.autograd.grad(want.sum(), model.lm_head.weight)[0]
    out = sequence_logps(model, batch, answer_logits=True)
    torch.testing.assert_close(out.token_logps, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mask, mask)
    assert out.answer_logits.shape == (int(mask.sum()), full.shape[-1])  # lm_head only at answer positions
    torch.testing.assert_close(out.answer_logits, full[:, :-1][mask.bool()], atol=1e-5, rtol=1e-5)
    g = torch.autograd.grad(out.sum().sum(), model.lm_head.weight)[0]
    torch.testing.assert_close(g, g_want, atol=1e-5, rtol=1e-4)


def test_selective_logps_in_chunks_is_log_softmax_at_target():
    logits, targets = torch.randn(37, 11), torch.randint(0, 11, (37,))
    want = torch.log_softmax(logits, -1)[torch.arange(37), targets]
    torch.testing.assert_close(selective_logps(logits, targets, chunk=5), want)
    torch.testing.assert_close(selective_logps(logits, targets), want)


def _shared_batch(tok, questions=("Who wrote it?", "Where was she born, and when?", "Why?")):
    head = "Context: these questions are about the fictional author Ann Lee and her books. "
    answers = ("Ann Lee.", "In a small town, far away, in 1950.", "Because.")
    return pad_batch([encode_qa(tok, head + q, a) for q, a in zip(questions, answers)], tok.pad_token_id)


def _calls(model):
    """Input shapes of every forward of `model` (a hook on its embedding)."""
    seen = []
    model.get_input_embeddings().register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    return seen


@pytest.mark.parametrize("train", [True, False])
def test_packed_rows_equal_the_padded_pass_values_and_gradients(base_dir, train):
    model, tok = load_model(base_dir)
    model.train(train)
    batch = _shared_batch(tok)
    keep = torch.nn.functional.pad(batch["labels"][:, 1:] != -100, (0, 1))
    c = pack_prefix(batch, keep)
    first_answer = int(keep.any(0).nonzero()[0])
    assert MIN_SHARED <= c <= first_answer  # the common head, never past the first kept position
    assert (batch["input_ids"][:, :c] == batch["input_ids"][:1, :c]).all()
    assert not (batch["input_ids"][:, c] == batch["input_ids"][0, c]).all()
    seen = _calls(model)
    want = sequence_logps(model, batch, pack=False)
    g_want = torch.autograd.grad(want.sum().sum(), list(model.parameters()))
    assert seen == [tuple(batch["input_ids"].shape)]
    got = sequence_logps(model, batch, answer_logits=True)
    n = int(batch["attention_mask"].sum()) - 2 * c  # three rows, the prefix once, no padding
    assert seen[1:] == [(1, n)] and n < batch["input_ids"].numel()
    torch.testing.assert_close(got.token_logps, want.token_logps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.mask, want.mask)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    torch.testing.assert_close(got.answer_logits, full[want.mask.bool()], atol=1e-4, rtol=1e-4)  # row-major order
    g = torch.autograd.grad(got.sum().sum(), list(model.parameters()))
    for a, b in zip(g, g_want):  # every parameter: the embedding and the prefix's share of every layer too
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_rows_without_a_shared_prefix_are_packed_without_padding(base_dir):
    model, tok = load_model(base_dir)
    rows = [[1, 5, 9, 12, 40, 41, 42, 43, 44], [1, 6, 9, 30, 31, 32]]  # differ from the second token
    batch = pad_batch([{"input_ids": r, "labels": [-100] * 3 + r[3:]} for r in rows], tok.pad_token_id)
    keep = torch.nn.functional.pad(batch["labels"][:, 1:] != -100, (0, 1))
    assert pack_prefix(batch, keep) == 0
    seen = _calls(model)
    got, want = sequence_logps(model, batch), sequence_logps(model, batch, pack=False)
    assert seen == [(1, int(batch["attention_mask"].sum())), tuple(batch["input_ids"].shape)]
    torch.testing.assert_close(got.token_logps, want.token_logps, atol=1e-5, rtol=1e-5)


def test_packing_not_used_where_it_would_change_the_pass(base_dir, monkeypatch):
    model, tok = load_model(base_dir)
    batch = _shared_batch(tok)
    keep = torch.nn.functional.pad(batch["labels"][:, 1:] != -100, (0, 1))
    assert pack_prefix({k: v[:1] for k, v in batch.items()}, keep[:1]) is None  # one row: nothing to pack
    left = pad_batch([encode_qa(tok, "A b c d e f g h i j k?", "Yes."), encode_qa(tok, "A b c d e f g h i j k l m?",
                      "No, never.")], tok.pad_token_id, side="left")
    assert pack_prefix(left, torch.ones_like(left["input_ids"], dtype=torch.bool)) is None  # positions differ
    assert pack_prefix(batch, torch.ones_like(keep)) == 0  # a logit kept at position 0: no prefix to share
    holes = dict(batch, attention_mask=batch["attention_mask"].clone())
    holes["attention_mask"][1, 3] = 0  # open-unlearning's `ids != pad id` masks tokens inside a row
    assert pack_prefix(holes, keep) is None
    c = pack_prefix(batch, keep)
    monkeypatch.setattr(logps, "PACK_MAX", int(batch["attention_mask"].sum()) - 2 * c - 1)
    assert pack_prefix(batch, keep) is None  # too many tokens for one packed row's (N×N) attention
    assert can_pack(model)
    assert not can_pack(lambda **kw: model(**kw))  # a functional forward (smoothers)
    model.config._attn_implementation = "flash_attention_2"  # takes no 4-D mask
    assert not can_pack(model)
    model.config._attn_implementation = "sdpa"
    model.train()
    model.model.extra_dropout = torch.nn.Dropout(0.1)  # active dropout: the prefix would share its mask across rows
    assert not can_pack(model)
    model.eval()
    assert can_pack(model)
