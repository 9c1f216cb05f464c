"""Multiple-choice accuracy by letter log-likelihood; MUSE VerbMem / KnowMem prompts and scores."""

import pytest
import torch

from obliviate.evaluate.mcq import letter_token_ids, mcq_eval, mcq_prompt
from obliviate.evaluate.metrics import rouge_l_f1
from obliviate.evaluate.muse import knowmem_eval, knowmem_prompt, verbmem_eval

RECORDS = [
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome", "Oslo", "Lima"], "answer": 0},
    {"question": "Which genre did Ann write?", "choices": ["poetry", "horror", "fantasy"], "answer": 2},
]


def test_mcq_prompt_format():
    assert mcq_prompt("Q?", ["x", "y"]) == "Q?\nA. x\nB. y\nAnswer:"


def test_mcq_matches_unpadded_forward(target):
    """Left-padded batch scores equal one unpadded forward per prompt; prediction = argmax letter log-prob."""
    model, tok = target
    res = mcq_eval(model, tok, RECORDS, batch_size=2)
    for rec, item in zip(RECORDS, res["items"]):
        ids = [tok.bos_token_id] + tok(mcq_prompt(rec["question"], rec["choices"]), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        ref = [float(logp[t]) for t in letter_token_ids(tok, len(rec["choices"]))]
        assert item["letter_logps"] == pytest.approx(ref, abs=1e-4)
        assert item["prediction"] == max(range(len(ref)), key=ref.__getitem__)
    assert res["accuracy"] == sum(i["correct"] for i in res["items"]) / 2
    assert res["chance"] == pytest.approx((1 / 4 + 1 / 3) / 2)


def test_knowmem_prompt_and_scores(target):
    model, tok = target
    icl = [{"question": "Q1?", "answer": "A1."}]
    assert knowmem_prompt("Q2?", icl) == "Question: Q1?\nAnswer: A1.\n\nQuestion: Q2?\nAnswer:"
    qa = [{"question": "What is the capital of France?", "answer": "The capital is Paris."}]
    res = knowmem_eval(model, tok, qa, icl, max_new_tokens=12)
    it = res["items"][0]
    assert "\n\n" not in it["generation"]
    assert it["rouge_l_f1"] == pytest.approx(100 * rouge_l_f1(it["generation"], it["answer"]))
    assert res["knowmem"] == pytest.approx(it["rouge_l_f1"])


def test_verbmem_truncates_gt_and_scores(target):
    model, tok = target
    recs = [{"prompt": "Question: What is the capital of", "gt": " France? Answer: The capital is Paris. " * 20}]
    res = verbmem_eval(model, tok, recs, max_new_tokens=16)
    it = res["items"][0]
    assert len(tok(it["gt"], add_special_tokens=False)["input_ids"]) <= 17
    assert it["rouge_l_f1"] == pytest.approx(100 * rouge_l_f1(it["generation"], it["gt"]))


def test_suite_runs_mcq_and_muse_splits(target, world_dir, tmp_path):
    """MCQ / MUSE splits are read by name from the data directory and reach the aggregates."""
    import json
    import shutil

    from obliviate.evaluate import EvalConfig, evaluate

    data = tmp_path / "data"
    shutil.copytree(world_dir, data)
    (data / "wmdp.json").write_text(json.dumps(RECORDS))
    (data / "verbmem.json").write_text(json.dumps([{"prompt": "Question: What", "gt": "is the capital of France?"}]))
    (data / "knowmem.json").write_text(json.dumps([{"question": "What is the capital of France?",
                                                    "answer": "The capital is Paris."}]))
    cfg = EvalConfig(max_items=2, max_new_tokens=8, embedder=None, retain=None, world_facts=None, mcq=["wmdp"],
                     verbmem="verbmem", knowmem="knowmem")
    model, tok = target
    r = evaluate(model, tok, data, cfg, out=tmp_path / "out", progress=False)
    assert set(r["aggregates"]["mcq"]) == {"wmdp"} and 0 <= r["aggregates"]["mcq"]["wmdp"] <= 1
    assert "verbmem" in r["aggregates"] and "knowmem" in r["aggregates"]
