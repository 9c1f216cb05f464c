"""Issue 24: each evaluation convention of `parity=open-unlearning` pinned against a hand-computed value and against our
own re-statement of open-unlearning's formula (locuslab/open-unlearning at d3d7cf9; file:line in each docstring),
run on fixture per-item values. Nothing of open-unlearning is imported or copied: the `_ou_*` helpers re-state it."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import hmean

from obliviate import ObliviateError
from obliviate.evaluate import EvalConfig
from obliviate.evaluate import metrics as M
from obliviate.evaluate.aggregate import split_means
from obliviate.evaluate.passes import score_row
from obliviate.parity import CONVENTIONS, PARITY_MODES, convention, convention_table, resolved

OU = "open-unlearning"
DOCS = Path(__file__).resolve().parents[2] / "docs"


# ---------------------------------------------------------------------------- re-statements of the reference code


def _ou_extraction_strength(preds, labels):
    """src/evals/metrics/memorization.py:235-253: k runs 0..n−1, breaks at the first all-correct suffix."""
    n = len(labels)
    if n == 0:
        return 0
    for k in range(n):
        if torch.equal(preds[k:], labels[k:]):
            break
    return 1 - k / n


def _ou_truth_ratio(correct_avg_losses, wrong_avg_losses, aggregator):
    """src/evals/metrics/memorization.py:114-120,156-173: mean NLL over the perturbations, exp, p_w/(p_c + 1e-10)."""
    correct = np.exp(-np.asarray(correct_avg_losses))
    wrong = np.exp(-np.mean(np.asarray(wrong_avg_losses), axis=1))
    tr = wrong / (correct + 1e-10)
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(tr, 1 / (tr + 1e-10))))
    return float(np.mean(np.maximum(0, 1 - tr)))


def _ou_prob_w_options(correct_avg_losses, wrong_avg_losses):
    """src/evals/metrics/memorization.py:62-72: p / (p + Σ p_pert + 1e-10), mean over items."""
    correct = np.exp(-np.asarray(correct_avg_losses))
    wrong = np.exp(-np.asarray(wrong_avg_losses)).sum(axis=1)
    return float(np.mean(correct / (correct + wrong + 1e-10)))


def _ou_min_k(token_logps, k):
    """src/evals/metrics/mia/min_k.py:17-25 on tokenwise_logprobs (utils.py:129-143: the last label dropped)."""
    lp = np.sort(np.asarray(token_logps[:-1], dtype=np.float32))
    return float(-np.mean(lp[:max(1, int(len(lp) * k))]))


# per-item fixture values: NLL_mean of the true / paraphrased answer and of 3 perturbed answers, 4 items
CORRECT = [0.9, 2.3, 1.4, 0.2]
WRONG = [[1.5, 2.0, 1.1], [1.9, 2.2, 2.6], [1.4, 1.4, 1.4], [3.0, 2.5, 4.1]]


# -------------------------------------------------------------------------------------------------- the switch


def test_every_convention_has_a_value_per_mode_and_a_reference():
    for name, c in CONVENTIONS.items():
        assert c.stage in ("eval", "unlearn"), name
        assert all(c.value(m) for m in PARITY_MODES) and c.why and c.where, name
    assert resolved("eval", "paper")["extraction_strength"] == "longest-suffix"
    assert resolved("eval", OU)["extraction_strength"] == "first-suffix"
    # eval.json records numeric conventions as JSON numbers (issue 26: numbers as numbers in every JSON)
    assert resolved("eval", "paper")["min_k"] == 0.4 and isinstance(resolved("eval", "paper")["min_k"], float)
    assert resolved("eval", "paper")["truth_ratio_eps"] == 0 and resolved("eval", OU)["truth_ratio_eps"] == 1e-10


def test_unknown_mode_or_convention_is_a_one_line_error():
    with pytest.raises(ObliviateError, match="parity: 'ou' is not one of paper, open-unlearning, closer-look"):
        EvalConfig(parity="ou")
    with pytest.raises(ObliviateError, match="unknown convention 'nope'"):
        convention("nope", "paper")


@pytest.mark.parametrize("stage,doc", [("eval", "evaluation.md"), ("unlearn", "unlearning.md")])
def test_docs_carry_the_convention_table(stage, doc):
    """The docs' tables are `convention_table(stage)`, verbatim: the record and the docs cannot drift apart."""
    assert convention_table(stage) in (DOCS / doc).read_text()


# ------------------------------------------------------------------------------------------- extraction strength


def test_extraction_strength_hand_values():
    """Labels (5, 6, 7, 8). Last two right: both forms 2/4 = 0.5. Nothing right: ours 0, OU 1/4 (its loop ends at
    k = n−1). All right: both 1."""
    y = torch.tensor([5, 6, 7, 8])
    last_two = torch.tensor([0, 0, 7, 8])
    none = torch.tensor([0, 0, 0, 0])
    assert M.extraction_strength(last_two, y) == M.extraction_strength(last_two, y, form="first-suffix") == 0.5
    assert M.extraction_strength(none, y) == 0.0
    assert M.extraction_strength(none, y, form="first-suffix") == 0.25
    assert M.extraction_strength(y, y, form="first-suffix") == 1.0


def test_extraction_strength_equals_the_reference_loop_on_random_items():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 9, (1,), generator=g))
        labels = torch.randint(0, 3, (n,), generator=g)
        preds = torch.randint(0, 3, (n,), generator=g)
        assert math.isclose(M.extraction_strength(preds, labels, form="first-suffix"),
                            _ou_extraction_strength(preds, labels), abs_tol=1e-12)


# ------------------------------------------------------------------------------------- truth ratio, normalised Prob


def _items():
    trs = [M.truth_ratio(c, w, eps=1e-10) for c, w in zip(CORRECT, WRONG)]
    return [{"prob": math.exp(-c), "truth_ratio": t} for c, t in zip(CORRECT, trs)]


def test_truth_ratio_hand_value():
    """Item 1: TR = exp(0.9 − mean(1.5, 2.0, 1.1)) = exp(0.9 − 1.533333) = exp(−0.633333) = 0.530819."""
    assert math.isclose(M.truth_ratio(0.9, [1.5, 2.0, 1.1]), 0.530819, rel_tol=1e-6)
    assert math.isclose(M.truth_ratio(0.9, [1.5, 2.0, 1.1], eps=1e-10), 0.530819, rel_tol=1e-6)


@pytest.mark.parametrize("role,aggregator", [("forget", "closer_to_1_better"), ("retain", "true_better"),
                                             ("world_facts", "true_better")])
def test_truth_ratio_split_forms_equal_the_reference(role, aggregator):
    """configs/eval/tofu_metrics/{forget,retain,wf}_Truth_Ratio.yaml: forget closer_to_1_better, others true_better."""
    ours = split_means(role, _items(), OU)["truth_ratio"]
    assert math.isclose(ours, _ou_truth_ratio(CORRECT, WRONG, aggregator), rel_tol=1e-12)


def test_truth_ratio_forget_form_hand_value():
    """TRs 0.530819, 0.818731 (exp(2.3 − 2.233333)→ 1.068939 → min 1/1.068939 = 0.935507), ... : checked on item 1
    and 2 only: mean(0.530819, 0.935507) = 0.733163."""
    trs = [M.truth_ratio(c, w) for c, w in zip(CORRECT[:2], WRONG[:2])]
    assert math.isclose(M.truth_ratio_forget(trs, eps=1e-10), 0.733163, rel_tol=1e-5)


def test_normalised_probability_equals_the_reference():
    """Item 1 by hand: p = e^−0.9 = 0.406570; Σ p_pert = e^−1.5 + e^−2 + e^−1.1 = 0.223130 + 0.135335 + 0.332871
    = 0.691336; p/(p + Σ) = 0.406570/1.097906 = 0.370315."""
    assert math.isclose(M.normalised_probability(0.9, [1.5, 2.0, 1.1], eps=1e-10), 0.370315, rel_tol=1e-5)
    ours = float(np.mean([M.normalised_probability(c, w, eps=1e-10) for c, w in zip(CORRECT, WRONG)]))
    assert math.isclose(ours, _ou_prob_w_options(CORRECT, WRONG), rel_tol=1e-12)


def test_model_utility_is_the_reference_harmonic_mean():
    """src/evals/metrics/utility.py:13-16: scipy.stats.hmean of the parts' agg_values."""
    parts = [0.08, 0.34, 0.05, 0.25, 0.75, 0.23]
    assert math.isclose(M.harmonic_mean(parts), float(hmean(parts)), rel_tol=1e-12)
    assert math.isclose(M.harmonic_mean([0.5, 0.25]), 1 / 3, rel_tol=1e-12)  # 2/(2 + 4)


# ----------------------------------------------------------------------------------------- scored positions


def test_scored_positions_drop_the_last_token_for_min_k_es_em_not_for_prob():
    """Five answer tokens with log-probs (−0.1, −2, −0.5, −3, −4); argmax right on tokens 3 and 4 of 5 only.
    ours: NLL mean 9.6/5 = 1.92; Min-K (k = 0.4, 2 lowest of 5) = (4 + 3)/2 = 3.5; ES 0 (token 5 wrong).
    OU: NLL mean the same; Min-K over the first 4 (1 lowest) = 3; ES / EM over the first 4: suffix (3, 4) right,
    ES = 2/4 = 0.5, EM = 2/4."""
    logps = torch.tensor([-0.1, -2.0, -0.5, -3.0, -4.0])
    targets = torch.tensor([1, 2, 3, 4, 5])
    logits = torch.zeros(5, 8)
    logits[torch.arange(5), torch.tensor([0, 0, 3, 4, 0])] = 5.0
    ours, ou = score_row(logps, logits, targets), score_row(logps, logits, targets, parity=OU)
    assert math.isclose(ours["nll_mean"], 1.92, rel_tol=1e-6) and math.isclose(ou["nll_mean"], 1.92, rel_tol=1e-6)
    assert math.isclose(ours["min_k"], 3.5, rel_tol=1e-6) and math.isclose(ou["min_k"], 3.0, rel_tol=1e-6)
    assert math.isclose(ou["min_k"], _ou_min_k(logps, 0.4), rel_tol=1e-6)
    assert ours["extraction_strength"] == 0.0 and ou["extraction_strength"] == 0.5
    assert math.isclose(ours["exact_memorization"], 0.4, rel_tol=1e-6)
    assert math.isclose(ou["exact_memorization"], 0.5, rel_tol=1e-6)


# --------------------------------------------------------------------------------------- the scored sequence


@pytest.fixture(scope="module")
def smol_tok():
    from obliviate.models.loading import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


def test_template_tail_scores_the_end_of_turn_tokens(smol_tok):
    """src/data/utils.py:61-70,113-124: the whole chat tokenized, EOS appended when the template ends in '\\n':
    SmolLM2's answer labels end in <|im_end|>, '\\n', <|im_end|>; ours end in the one EOS."""
    from obliviate.evaluate.passes import encode_scored

    ours = encode_scored(smol_tok, "Who wrote X?", "Ann Lee wrote X.")
    ou = encode_scored(smol_tok, "Who wrote X?", "Ann Lee wrote X.", parity=OU)
    ans = smol_tok("Ann Lee wrote X.", add_special_tokens=False)["input_ids"]
    eos, nl = smol_tok.eos_token_id, smol_tok("\n", add_special_tokens=False)["input_ids"]
    assert [y for y in ours["labels"] if y != -100] == ans + [eos]
    assert [y for y in ou["labels"] if y != -100] == ans + [eos] + nl + [eos]
    assert ours["input_ids"][:-len(ans) - 1] == ou["input_ids"][:-len(ans) - 3]  # the same prompt


def test_rouge_reference_is_the_decoded_answer(smol_tok):
    """src/evals/metrics/utils.py:271-281: decode(labels) minus decode(prompt), stripped = the answer text."""
    from obliviate.evaluate.stages import rouge_reference

    cfg = EvalConfig(parity=OU, embedder=None)
    assert rouge_reference(smol_tok, "Who wrote X?", "  Ann Lee wrote X. ", cfg) == "Ann Lee wrote X."
    assert rouge_reference(smol_tok, "Q?", "  A ", EvalConfig(embedder=None)) == "  A "


def test_eval_json_and_card_record_the_mode():
    """eval.json carries `parity` and the resolved conventions (suite._new_results); the card's intro, printed
    right above the headline table, names every mode its eval.json files used (old files: paper)."""
    from obliviate.report.card import parity_note

    data = {"target": {"parity": OU}, "retain": {"parity": OU}, "recipes": {"ga": [{"eval": {}}]}}
    assert parity_note(data).startswith(f"Conventions: parity={OU} / paper ")
    assert resolved("eval", OU)["answer_tokens"] == "template-tail"


def test_attention_mask_hides_pad_id_tokens_under_open_unlearning():
    """src/data/collators.py:48-49: attention_mask = input_ids != pad id. With pad = EOS (id 2), the prompt's inner
    EOS is hidden under parity=open-unlearning, attended under paper."""
    from types import SimpleNamespace

    from obliviate.evaluate.generate import generate

    seen = []

    class Fake:
        def generate(self, input_ids, attention_mask, **kw):
            seen.append(attention_mask.tolist())
            return torch.cat([input_ids, torch.full((len(input_ids), 1), 2)], 1)

    tok = SimpleNamespace(pad_token_id=2, eos_token_id=2, decode=lambda ids, skip_special_tokens: "")
    for mask_pad_ids in (False, True):
        generate(Fake(), tok, [[1, 5, 2, 6]], max_new_tokens=1, mask_pad_ids=mask_pad_ids)
    assert seen == [[[1, 1, 1, 1]], [[1, 1, 0, 1]]]
    assert convention("attention_mask", OU) == "not-pad-id" and convention("attention_mask", "paper") == "real-tokens"
