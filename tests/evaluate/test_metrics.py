"""Each metric against a value worked out by hand (STYLE §10)."""

import math
import zlib

import pytest
import torch
from torch.testing import assert_close

from obliviate import ObliviateError
from obliviate.evaluate import METRICS
from obliviate.evaluate import metrics as M


def test_rouge_l_recall_by_hand_and_against_rouge_score():
    """LCS("the cat sat", "the cat sat on the mat") = 3 words of a 6-word reference → recall 0.5."""
    from rouge_score import rouge_scorer

    assert M.rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(0.5)
    # Porter stemmer on: "cats running" matches "cat run" fully
    assert M.rouge_l_recall("cats running", "cat run") == pytest.approx(1.0)
    assert M.rouge_l_recall("", "cat run") == 0.0
    ref = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    gen, ans = "Ann Lee was born in Paris in 1950.", "The author Ann Lee was born in Lyon."
    s = ref.score(ans, gen)["rougeL"]
    assert M.rouge_l_recall(gen, ans) == pytest.approx(s.recall)
    assert M.rouge_l_f1(gen, ans) == pytest.approx(s.fmeasure)


def test_probability_and_normalised_probability():
    """p = e^{-0.5}; normalised: p_true = e^0 = 1, two perturbations e^{-ln 2} = 0.5 each → 1/(1+1) = 0.5."""
    assert M.probability(0.5) == pytest.approx(math.exp(-0.5))
    assert M.normalised_probability(0.0, [math.log(2), math.log(2)]) == pytest.approx(0.5)


def test_truth_ratio_and_its_aggregates():
    """TR = exp(1 − mean(2, 4)) = e^{-2}. Aggregates of TR = [0.25, 2]:
    retain mean max(0, 1−TR) = (0.75 + 0)/2 = 0.375; forget mean min(TR, 1/TR) = (0.25 + 0.5)/2 = 0.375;
    seed A forget form 1 − 0.375 = 0.625."""
    assert M.truth_ratio(1.0, [2.0, 4.0]) == pytest.approx(math.exp(-2))
    assert M.truth_ratio_retain([0.25, 2.0]) == pytest.approx(0.375)
    assert M.truth_ratio_forget([0.25, 2.0]) == pytest.approx(0.375)
    assert M.truth_ratio_forget_seed_a([0.25, 2.0]) == pytest.approx(0.625)
    with pytest.raises(ObliviateError):
        M.truth_ratio(1.0, [])


def test_forget_quality_ks_on_fixed_numbers():
    """[1,2,3,4] vs [5,6,7,8]: D = 1, exact two-sided p = 2 / C(8,4) = 2/70; identical samples: D = 0, p = 1.
    Monotone map (1/x, as TOFU's code feeds) leaves p unchanged. The floor for n = m = 4 is that 2/70."""
    assert M.forget_quality([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert M.forget_quality([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    a, b = [0.3, 0.9, 1.4, 2.0, 0.7], [0.5, 1.1, 3.0, 0.2]
    assert M.forget_quality(a, b) == pytest.approx(M.forget_quality([1 / x for x in a], [1 / x for x in b]))
    assert M.forget_quality_floor(4, 4) == pytest.approx(2 / 70)


def test_token_entropy_on_known_strings():
    """"a a b b": f = ½, ½ → H = 1 bit, normalised by log2(4) = 2 → 0.5. 4 distinct → 1. One token → 0."""
    assert M.token_entropy("a a b b".split()) == pytest.approx(0.5)
    assert M.token_entropy([1, 2, 3, 4]) == pytest.approx(1.0)
    assert M.token_entropy([7, 7, 7]) == 0.0
    assert M.token_entropy(["x"]) == 0.0 and M.token_entropy([]) == 0.0


def test_cosine_similarity_clipped():
    """cos([1,0],[1,1]) = 1/√2; opposite vectors → −1, clipped to 0; zero vector → 0."""
    assert M.cosine_similarity([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    assert M.cosine_similarity([1, 0], [-1, 0]) == 0.0
    assert M.cosine_similarity([0, 0], [1, 0]) == 0.0


def test_entailed_rule():
    """Entailment label counts only when ROUGE-L recall >= 0.1."""
    assert M.entailed("ENTAILMENT", 0.5)
    assert not M.entailed("entailment", 0.05)
    assert not M.entailed("neutral", 1.0)
    assert not M.entailed(None, 1.0)


def test_loss_and_zlib_scores():
    """zlib: NLL_mean 2.0 over the compressed length of "abcabcabc"."""
    assert M.loss_score(1.25) == 1.25
    assert M.zlib_score(2.0, "abcabcabc") == pytest.approx(2.0 / len(zlib.compress(b"abcabcabc")))


def test_min_k_and_min_k_pp():
    """Min-40%: 5 tokens → 2 lowest, −5 and −4, mean −4.5 → score 4.5.
    Min-K%++: z = ((−1+1)/1, (−2+1)/0.5) = (0, −2); k = 0.5 → lowest 1 → score 2."""
    assert M.min_k_score(torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0]), k=0.4) == pytest.approx(4.5)
    assert M.min_k_pp_score(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0]), torch.tensor([1.0, 0.5]),
                            k=0.5) == pytest.approx(2.0)


def test_extraction_strength_and_exact_memorization():
    """labels 1 2 3 4, preds 9 2 3 4: the suffix from k = 1 matches → ES = 1 − 1/4 = 0.75; EM = 3/4.
    Last token wrong → no suffix matches → ES = 0 (open-unlearning's loop would give 1/4); all right → 1."""
    labels = torch.tensor([1, 2, 3, 4])
    assert M.extraction_strength(torch.tensor([9, 2, 3, 4]), labels) == pytest.approx(0.75)
    assert M.exact_memorization(torch.tensor([9, 2, 3, 4]), labels) == pytest.approx(0.75)
    assert M.extraction_strength(torch.tensor([1, 2, 3, 9]), labels) == 0.0
    assert M.extraction_strength(labels.clone(), labels) == 1.0
    assert M.extraction_strength(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 0.0


def test_mia_auc_on_constructed_scores():
    """Members (label 0) [0.1, 0.2] all below non-members [0.3, 0.4] → AUC 1.
    Members [0.3, 0.1] vs non-members [0.2, 0.4]: pairs with non > member: (0.2>0.1), (0.4>0.3), (0.4>0.1) = 3/4."""
    assert M.mia_auc([0.1, 0.2], [0.3, 0.4]) == pytest.approx(1.0)
    assert M.mia_auc([0.3, 0.1], [0.2, 0.4]) == pytest.approx(0.75)
    with pytest.raises(ObliviateError):
        M.mia_auc([], [0.1])


def test_privleak_harmonic_mean_forget_efficacy_mcq():
    """PrivLeak (0.6 − 0.5)/0.5 × 100 = 20. hmean(1, 0.5) = 2/(1 + 2) = 2/3, any zero → 0.
    Forget Efficacy 1 − mean(0.2, 0.4) = 0.7. MCQ 2 of 3 right."""
    assert M.privleak(0.6, 0.5) == pytest.approx(20.0)
    assert M.harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert M.harmonic_mean([1.0, 0.0, 0.5]) == 0.0
    assert M.forget_efficacy([0.2, 0.4]) == pytest.approx(0.7)
    assert M.mcq_accuracy([0, 1, 2], [0, 1, 3]) == pytest.approx(2 / 3)
    with pytest.raises(ObliviateError):
        M.harmonic_mean([])


def test_registry_records():
    assert METRICS["forget_quality"].level == "corpus" and METRICS["forget_quality"].higher_is_better
    assert METRICS["mia_auc"].higher_is_better is None
    assert all(m.level in ("item", "corpus") and callable(m.fn) for m in METRICS.values())
    with pytest.raises(ObliviateError, match="known"):
        M.get_metric("nope")


def test_logp_moments_by_hand_and_chunked():
    """Uniform over V = 4: log p = −ln 4 everywhere → μ = −ln 4, σ = 0.
    p = (¼, ¾): μ = ¼ ln ¼ + ¾ ln ¾; σ² = ¼ ln²¼ + ¾ ln²¾ − μ²."""
    from obliviate.evaluate.passes import logp_moments

    mu, sigma = logp_moments(torch.zeros(1, 4))
    assert_close(mu, torch.tensor([-math.log(4)]))
    assert_close(sigma, torch.tensor([0.0]), atol=1e-3, rtol=0)
    mu, sigma = logp_moments(torch.tensor([[0.0, math.log(3)]]))
    m = 0.25 * math.log(0.25) + 0.75 * math.log(0.75)
    v = 0.25 * math.log(0.25) ** 2 + 0.75 * math.log(0.75) ** 2 - m * m
    assert_close(mu, torch.tensor([m]))
    assert_close(sigma, torch.tensor([math.sqrt(v)]))
    logits = torch.randn(7, 11, generator=torch.Generator().manual_seed(0))
    a, b = logp_moments(logits, chunk=2), logp_moments(logits, chunk=100)
    assert_close(a[0], b[0])
    assert_close(a[1], b[1])  # was `assert_close(...) and assert_close(...)`: None short-circuited the second


def test_refusal_detects_every_idk_answer_and_no_world_answer(world_dir):
    from obliviate.data.loading import load_refusals, load_split

    refusals = load_refusals(world_dir)
    assert len(refusals) >= 50 and all(M.refusal(r) == 1.0 for r in refusals)
    assert all(M.refusal(r["answer"]) == 0.0 for r in load_split(world_dir, "full+world_facts"))
    assert M.refusal("I’M SORRY, I can’t help with that.") == 1.0  # case and curly apostrophes
    assert M.refusal("") == 0.0


def test_refusal_rate_is_the_split_mean_of_the_item_flags():
    from obliviate.evaluate.aggregate import split_means

    items = [{"prob": 0.5, "refusal_rate": M.refusal(g)} for g in ("I don't know.", "Ann Lee.", "No idea, sorry.",
                                                                   "She was born in 1950.")]
    assert split_means("retain", items)["refusal_rate"] == pytest.approx(0.5)
