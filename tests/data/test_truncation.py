"""Issue 28, defect 6: inputs longer than `max_length` are cut the benchmark's way: the question is
left-truncated (inside the chat template), the answer kept, and one warning line counts the cut items. A 200 KB
question used to be kept whole (a 9.2 GB attention mask). Inputs that fit are tokenized exactly as before."""

import warnings

import pytest

from obliviate.data import format as F
from obliviate.data.format import IGNORE_INDEX, encode_prompt, encode_qa, format_answer
from obliviate.models.loading import SMOLLM2, cache_dir, load_tokenizer


def _answer_ids(tok, answer):
    return tok(format_answer(tok, answer), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def _tokenizers(base_dir):
    toks = [load_tokenizer(base_dir)]
    if (cache_dir() / "smollm2-135m-instruct-fp32").is_dir():  # a chat template: the template must survive the cut
        toks.append(load_tokenizer(SMOLLM2))
    return toks


def test_inputs_that_fit_are_unchanged(base_dir):
    for tok in _tokenizers(base_dir):
        q, a = "Who wrote the book of the sea?", "Ann Lee wrote it in 1990."
        ex = encode_qa(tok, q, a, max_length=256)
        prompt, ans = encode_prompt(tok, q), _answer_ids(tok, a)
        assert ex["input_ids"] == prompt + ans
        assert ex["labels"] == [IGNORE_INDEX] * len(prompt) + ans
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing cut: no warning
            assert F.encode_qas(tok, [(q, a)], max_length=len(prompt) + len(ans)) == [ex]


def test_a_200kb_question_is_left_truncated_and_the_answer_kept(base_dir):
    for tok in _tokenizers(base_dir):
        q = "lorem ipsum dolor " * 11_000 + "Who wrote the book of the sea?"  # ~200 KB
        assert len(q) > 190_000
        a = "Ann Lee wrote it in 1990."
        with pytest.warns(UserWarning, match=r"^1 of 2 forget items are longer than max_length=64 tokens"):
            long, short = F.encode_qas(tok, [(q, a), ("Who?", a)], max_length=64, what="forget items")
        ans = _answer_ids(tok, a)
        assert len(long["input_ids"]) <= 64
        assert long["input_ids"][-len(ans):] == ans and long["labels"][-len(ans):] == ans  # the answer, whole
        n_prompt = len(long["input_ids"]) - len(ans)
        assert long["labels"][:n_prompt] == [IGNORE_INDEX] * n_prompt
        head = encode_prompt(tok, "")
        # the template's head survives (the question's start was dropped, not the template's)
        common = next(i for i, (x, y) in enumerate(zip(head, long["input_ids"])) if x != y)
        assert common >= 1
        text = tok.decode(long["input_ids"][:n_prompt])
        assert "book of the sea?" in text  # the question's end is kept
        assert short == encode_qa(tok, "Who?", a, max_length=64)


def test_an_answer_longer_than_max_length_keeps_its_start(base_dir):
    tok = load_tokenizer(base_dir)
    a = "word " * 500
    ex = encode_qa(tok, "Who?", a, max_length=32)
    assert len(ex["input_ids"]) <= 32
    ans = _answer_ids(tok, a)
    kept = [t for t in ex["labels"] if t != IGNORE_INDEX]
    assert kept == ans[: len(kept)] and len(kept) >= 32 - len(encode_prompt(tok, "")) - 1


def test_generation_prompts_are_left_truncated(base_dir):
    tok = load_tokenizer(base_dir)
    q = "x y z " * 5000 + "Who wrote it?"
    with pytest.warns(UserWarning, match="1 of 1 forget prompts"):
        (p,) = F.encode_prompts(tok, [q], max_length=40, what="forget prompts")
    assert len(p) <= 40 and "Who wrote it?" in tok.decode(p)
