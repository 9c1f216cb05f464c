"""Answer-position-only log-probs (`logits_to_keep`) equal the full-logits shift-and-gather, values and gradients."""

import torch

from obliviate.data.format import encode_qa, pad_batch
from obliviate.models.loading import load_model
from obliviate.models.logps import gather_token_logps, selective_logps, sequence_logps


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
