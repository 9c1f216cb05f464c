"""MUSE conventions under `parity=` (`muse_bos`, `verbmem_reference`, `knowmem_stop`, `privleak_auc`), each against a
hand-computed value and our re-statement of MUSE's code (swj0419/muse_bench eval.py; metrics/*.py read in the forks
named in obliviate.parity) and of open-unlearning's (d3d7cf9)."""

from pathlib import Path

import numpy as np
import pytest

from obliviate.data.loading import read_records
from obliviate.evaluate import EvalConfig, aggregate, evaluate
from obliviate.evaluate import metrics as M
from obliviate.evaluate.muse import MUSE_STOPS, _ids, cut_at, knowmem_eval, verbmem_reference
from obliviate.parity import convention

FIX = Path(__file__).parents[1] / "fixtures"


def test_values_per_mode():
    ou = [convention(c, "open-unlearning") for c in ("muse_bos", "verbmem_reference", "knowmem_stop", "privleak_auc")]
    assert ou == ["tokenizer-default", "full-text", "muse-stops", "muse"]
    paper = [convention(c, "paper") for c in ("muse_bos", "verbmem_reference", "knowmem_stop", "privleak_auc")]
    assert paper == ["always", "first-tokens", "blank-line", "member-high"]


def _muse_auc(forget_scores, holdout_scores):
    """MUSE metrics/privleak.py:58-61 re-stated: roc_curve(y, −score), split0 = forget labelled 0, then auc."""
    from sklearn.metrics import auc, roc_curve

    y = np.array([0] * len(forget_scores) + [1] * len(holdout_scores))
    fpr, tpr, _ = roc_curve(y, -np.array(list(forget_scores) + list(holdout_scores)))
    return auc(fpr, tpr)


def test_privleak_orientation_by_hand_and_against_muse():
    """Min-K scores forget [1, 2, 3], holdout [2.5, 4, 5]: 8 of the 9 (forget, holdout) pairs have the holdout score
    higher, so `mia_auc` = 8/9 and MUSE's AUC = 1/9. With AUC_retrain 0.5 (ours) = 0.5 (MUSE's):
    member-high (8/9 − 0.5)/0.5·100 = 77.78; muse (1/9 − 0.5)/0.5·100 = −77.78 (MUSE eval.py:78)."""
    forget, holdout = [1.0, 2.0, 3.0], [2.5, 4.0, 5.0]
    ours = M.mia_auc(forget, holdout)
    assert ours == pytest.approx(8 / 9) and _muse_auc(forget, holdout) == pytest.approx(1 / 9)
    assert M.privleak(ours, 0.5) == pytest.approx(700 / 9)
    muse = M.privleak(ours, 0.5, orientation="muse")
    assert muse == pytest.approx(-700 / 9)
    assert muse == pytest.approx((_muse_auc(forget, holdout) - 0.5) / 0.5 * 100)
    # OU privacy.py:50-52: score = 1 − auc, ref = 1 − ref, (score − ref)/(ref + 1e-10)·100; retain AUC 0.6 (ours)
    assert M.privleak(ours, 0.6, orientation="muse") == pytest.approx(((1 - 8 / 9) - 0.4) / (0.4 + 1e-10) * 100)


def test_aggregate_reads_the_mode_from_the_results():
    mia = lambda v: {"mia": dict.fromkeys(("loss", "zlib", "min_k", "min_k_pp"), v)}  # noqa: E731
    text = {"privleak_forget": {"items": [mia(1.0), mia(2.0), mia(3.0)]},
            "privleak_holdout": {"items": [mia(2.5), mia(4.0), mia(5.0)]}}
    res = {"benchmark": "muse-news", "splits": {}, "text": text, "mia_roles": ["privleak_forget", "privleak_holdout"]}
    assert aggregate(res, privleak_reference_auc=0.5)[0]["privleak"] == pytest.approx(700 / 9)
    agg, _ = aggregate({**res, "parity": "open-unlearning"}, privleak_reference_auc=0.5)
    assert agg["privleak"] == pytest.approx(-700 / 9)


def test_published_constant_is_read_in_muses_orientation():
    """MUSE eval.py:78 with AUC_RETRAIN 0.4772: PrivLeak = (AUC_muse − 0.4772)/0.4772·100. Forget [1, 2, 3] vs
    holdout [2.5, 4, 5]: AUC_muse = 1/9, so (1/9 − 0.4772)/0.4772·100 = −76.72 under `muse`; under `paper` the same
    constant is 1 − 0.4772 = 0.5228 in our orientation: (8/9 − 0.5228)/0.5228·100 = +70.02. A model exactly at
    MUSE's retrain AUC scores 0 in both."""
    mia = lambda v: {"mia": dict.fromkeys(("loss", "zlib", "min_k", "min_k_pp"), v)}  # noqa: E731
    text = {"privleak_forget": {"items": [mia(1.0), mia(2.0), mia(3.0)]},
            "privleak_holdout": {"items": [mia(2.5), mia(4.0), mia(5.0)]}}
    res = {"benchmark": "muse-news", "splits": {}, "text": text, "mia_roles": ["privleak_forget", "privleak_holdout"]}
    paper, _ = aggregate(res, privleak_reference_auc=0.4772)
    muse, _ = aggregate({**res, "parity": "open-unlearning"}, privleak_reference_auc=0.4772)
    assert muse["privleak"] == pytest.approx((1 / 9 - 0.4772) / 0.4772 * 100, rel=1e-8)
    assert paper["privleak"] == pytest.approx((8 / 9 - 0.5228) / 0.5228 * 100)
    assert paper["privleak_reference_auc"] == 0.4772
    assert M.privleak(0.5228, 1 - 0.4772) == pytest.approx(0.0)


def test_knowmem_stops_by_hand():
    """MUSE knowmem.py:49 cuts at each stop in turn."""
    assert cut_at("Paris\nQuestion: Who?", MUSE_STOPS) == "Paris"
    assert cut_at("Paris. Question: Who?", MUSE_STOPS) == "Paris. "
    assert cut_at("Paris\n\nmore", MUSE_STOPS) == "Paris"
    assert cut_at("Paris", MUSE_STOPS) == "Paris"


def test_bos_and_verbmem_reference(target):
    """The micro tokenizer adds no BOS by default (GPT-2-like), so `tokenizer-default` has none; `always` has one.
    `first-tokens` keeps the first n tokens of gt; `full-text` the whole, stripped (OU's decoded labels)."""
    _, tok = target
    bare = tok("The council met.", add_special_tokens=False)["input_ids"]
    assert _ids(tok, "The council met.", "tokenizer-default") == tok("The council met.")["input_ids"] == bare
    assert _ids(tok, "The council met.") == [tok.bos_token_id] + bare
    gt = " The council met on Monday to vote on the budget. "
    ids = tok(gt, add_special_tokens=False)["input_ids"]
    assert verbmem_reference(tok, gt, 3) == tok.decode(ids[:3], skip_special_tokens=True)
    assert verbmem_reference(tok, gt, 3, "full-text") == "The council met on Monday to vote on the budget."


def test_knowmem_muse_stops_cut_the_same_generations(target):
    """Same prompts and BOS: the muse-stops answers are the blank-line answers cut at MUSE's stops and stripped."""
    model, tok = target
    qa = [{"question": "What is the capital of France?", "answer": "Paris."},
          {"question": "Which genre did Ann write?", "answer": "Poetry."}]
    icl = [{"question": "Q1?", "answer": "A1."}]
    blank = knowmem_eval(model, tok, qa, icl, max_new_tokens=16, bos="tokenizer-default")
    muse = knowmem_eval(model, tok, qa, icl, max_new_tokens=16, bos="tokenizer-default", stop="muse-stops")
    for b, m in zip(blank["items"], muse["items"]):
        assert m["generation"] == cut_at(b["generation"], MUSE_STOPS).strip()
        assert m["rouge_l_f1"] == pytest.approx(100 * M.rouge_l_f1(m["generation"], m["answer"]))


def test_muse_eval_under_open_unlearning(target, tmp_path):
    """The MUSE fixture under parity=open-unlearning: VerbMem against the whole gt, PrivLeak in MUSE's orientation."""
    model, tok = target
    cfg = EvalConfig(embedder=None, max_new_tokens=8, parity="open-unlearning")
    r = evaluate(model, tok, str(FIX / "muse-news"), cfg, benchmark="muse-news", progress=False)
    gts = [r["gt"] for r in read_records(FIX / "muse-news/verbmem/forget.json")]  # JSON Lines, as published
    want = [verbmem_reference(tok, g, 0, "full-text") for g in gts]
    assert [it["gt"] for it in r["muse"]["verbmem"]["items"]] == want
    agg = r["aggregates"]
    auc, ref = agg["mia"]["min_k"], agg["privleak_reference_auc"]
    assert agg["privleak_reference"].startswith("given constant") and ref == 0.4772
    assert agg["privleak"] == pytest.approx(((1 - auc) - ref) / ref * 100)  # MUSE eval.py:78, AUC_RETRAIN as is
    assert r["conventions"]["privleak_auc"] == "muse"
