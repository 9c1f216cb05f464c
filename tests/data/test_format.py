import torch

from obliviate.data.format import IGNORE_INDEX, encode_qa, format_prompt, pad_batch
from obliviate.models.loading import load_tokenizer
from obliviate.models.logps import sequence_logps


def test_prompt_and_padding_carry_no_loss(base_dir):
    tok = load_tokenizer(base_dir)
    assert format_prompt(tok, "Who?") == "Question: Who?\nAnswer:"
    a = encode_qa(tok, "Who wrote it?", "Ann Lee wrote it.")
    b = encode_qa(tok, "Why?", "No.")
    prompt_len = len(tok("Question: Who wrote it?\nAnswer:", add_special_tokens=False)["input_ids"]) + 1  # + BOS
    assert a["input_ids"][0] == tok.bos_token_id
    assert a["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert a["labels"][prompt_len:] == a["input_ids"][prompt_len:]
    assert a["labels"][-1] == tok.eos_token_id  # the final EOS is learned
    assert tok.decode(a["input_ids"][prompt_len:-1]) == " Ann Lee wrote it."
    batch = pad_batch([a, b], tok.pad_token_id)
    short = len(b["input_ids"])
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][1, short:] == 0).all() and (batch["attention_mask"][0] == 1).all()
    left = pad_batch([a, b], tok.pad_token_id, side="left")
    assert left["input_ids"][1, -short:].tolist() == b["input_ids"]


def test_loss_ignores_prompt_and_padding_tokens(base_dir):
    """Changing prompt-free padding or labels outside the answer must not change the answer log-prob."""
    from obliviate.models.loading import load_model

    model, tok = load_model(base_dir)
    a = encode_qa(tok, "Who wrote it?", "Ann Lee wrote it.")
    b = encode_qa(tok, "A much longer question that pads the other row?", "Yes.")
    alone = pad_batch([a], tok.pad_token_id)
    padded = pad_batch([a, b], tok.pad_token_id)
    with torch.no_grad():
        lp_alone = sequence_logps(model, alone)
        lp_padded = sequence_logps(model, padded)
    torch.testing.assert_close(lp_alone.sum()[0], lp_padded.sum()[0], rtol=1e-5, atol=1e-5)
    n_answer = sum(1 for x in a["labels"] if x != IGNORE_INDEX)
    assert lp_padded.mask[0].sum().item() == n_answer
    # the hand-rolled NLL equals transformers' own masked cross-entropy
    with torch.no_grad():
        hf = model(**alone).loss
    torch.testing.assert_close(-lp_alone.mean()[0], hf, rtol=1e-5, atol=1e-5)
