"""Every metric as a short pure function (per item, or per corpus), plus one `METRICS` record each.

Per-item functions take plain numbers / strings / 1-D tensors of one item; corpus functions take
lists of per-item values. Neither runs a model: `passes.py` and `generate.py` produce their inputs.
Definitions and the forms we use: SPEC §3 (TOFU, "A Closer Look at Machine Unlearning for LLMs",
MUSE, Min-K%++, open-unlearning's memorisation metrics).

MIA scores follow open-unlearning's convention: **higher = looks less like a member** (loss-like), and
``mia_auc`` puts members (forget) at label 0 and non-members (holdout) at label 1, so AUC > 0.5 means
the model still separates what it was trained on; the retrained model sits near 0.5.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from obliviate import ObliviateError

# ----------------------------------------------------------------------------------------------- text


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(generation: str, reference: str) -> float:
    """ROUGE-L recall of `generation` against `reference` (``rouge_score``, Porter stemmer on), as TOFU.

    .. math:: R_{LCS} = \\mathrm{LCS}(gen, ref) / |ref|

    An empty generation scores 0.
    """
    return float(_rouge_scorer().score(reference, generation)["rougeL"].recall)


def rouge_l_f1(generation: str, reference: str) -> float:
    """ROUGE-L F-measure (MUSE's VerbMem / KnowMem use it ×100)."""
    return float(_rouge_scorer().score(reference, generation)["rougeL"].fmeasure)


def token_entropy(tokens: Sequence[Hashable]) -> float:
    """Normalised unigram entropy of a generation's tokens (Yuan et al., "A Closer Look at Machine
    Unlearning for LLMs", arXiv:2410.08109). Low when the model repeats itself (a collapsed output).

    .. math:: TE = -\\sum_w f(w) \\log_2 f(w) \\;/\\; \\log_2 n, \\qquad f(w) = \\#w / n

    Args:
        tokens: the n generated tokens (ids or strings). n <= 1 gives 0.
    """
    n = len(tokens)
    if n <= 1:
        return 0.0
    h = -sum((c / n) * math.log2(c / n) for c in Counter(tokens).values())
    return h / math.log2(n)


# Refusal phrasings, lower-case, matched anywhere in a generation: the stems of obliviate's IDK answers
# (data/refusals.txt, TOFU's idontknow list) and the usual assistant refusals (GCG's refusal prefixes).
REFUSAL_MARKERS = (
    "not sure", "don't know", "do not know", "no idea", "can't say", "cannot say", "can't help", "cannot help",
    "don't have an answer", "do not have an answer", "not able to say", "unable to say", "not certain",
    "couldn't tell you", "could not tell you", "can't tell you", "cannot tell you", "i'm sorry", "i am sorry",
    "i apologize", "i apologise", "as an ai", "i cannot answer", "i can't answer", "i cannot provide",
    "i can't provide", "no information",
)


def refusal(generation: str, markers: Sequence[str] = REFUSAL_MARKERS) -> float:
    """1 if a generation refuses to answer, else 0; its split mean is the **refusal rate** (Closer-Look's
    reason for Answer Preservation: an IDK-unlearned model that over-refuses on retain questions).

    .. math:: \mathrm{refusal}(g) = [\exists m \in \mathcal M: m \subseteq \mathrm{lower}(g)]

    with :math:`\mathcal M` = `REFUSAL_MARKERS` (curly apostrophes read as straight ones). An empty generation
    is not a refusal (it is a failure to answer, which ROUGE already counts).
    """
    text = generation.lower().replace("\u2019", "'")
    return float(any(m in text for m in markers))


def cosine_similarity(after: Sequence[float], before: Sequence[float]) -> float:
    """Seed A's Cosine Similarity of two sentence embeddings, clipped at 0.

    .. math:: CS = \\max(0, \\cos(e_{after}, e_{before}))

    Zero-norm embeddings (never produced by sentence-transformers) give 0.
    """
    a, b = np.asarray(after, dtype=np.float64), np.asarray(before, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return max(0.0, float(a @ b / (na * nb)))


def entailed(label: str | None, rouge_recall: float, *, rouge_floor: float = 0.1) -> bool:
    """Seed A's per-item Entailment rule: the NLI label is entailment, unless ROUGE-L recall < floor."""
    return rouge_recall >= rouge_floor and label is not None and label.lower().startswith("entail")


# ------------------------------------------------------------------------------------- probabilities


def probability(nll_mean: float) -> float:
    """TOFU Probability of an answer: :math:`p = \\exp(-\\mathrm{NLL}_{mean}(y|x))` (per-token geometric mean)."""
    return math.exp(-nll_mean)


def normalised_probability(nll_mean: float, perturbed_nll_means: Sequence[float]) -> float:
    """TOFU Probability on real-authors / world-facts: the true answer against its perturbations.

    .. math:: p = \\frac{p(y)}{p(y) + \\sum_k p(\\hat y_k)}, \\qquad p(\\cdot) = \\exp(-\\mathrm{NLL}_{mean})
    """
    p = math.exp(-nll_mean)
    return p / (p + sum(math.exp(-v) for v in perturbed_nll_means))


def truth_ratio(nll_mean: float, perturbed_nll_means: Sequence[float]) -> float:
    """TOFU Truth Ratio of one item (Maini et al., arXiv:2401.06121), small when the model prefers the truth.

    .. math:: TR = \\frac{(\\prod_k \\tilde P(\\hat y_k))^{1/K}}{\\tilde P(\\tilde y)}
              = \\exp\\big(\\mathrm{NLL}_{mean}(\\tilde y) - \\tfrac1K \\sum_k \\mathrm{NLL}_{mean}(\\hat y_k)\\big)

    Args:
        nll_mean: NLL_mean of the paraphrased answer ỹ (author splits) or the answer (world facts).
        perturbed_nll_means: NLL_mean of each of the K perturbed answers ŷ_k.
    """
    if not perturbed_nll_means:
        raise ObliviateError("truth ratio needs at least one perturbed answer")
    return math.exp(nll_mean - float(np.mean(perturbed_nll_means)))


def truth_ratio_retain(truth_ratios: Sequence[float]) -> float:
    """TOFU retain-type aggregate: :math:`\\mathrm{mean}_i \\max(0, 1 - TR_i)` (higher = knows the truth)."""
    return float(np.mean([max(0.0, 1.0 - t) for t in truth_ratios]))


def truth_ratio_forget(truth_ratios: Sequence[float]) -> float:
    """TOFU forget aggregate: :math:`\\mathrm{mean}_i \\min(TR_i, 1/TR_i)` (1 = indifferent, like never trained)."""
    return float(np.mean([min(t, 1.0 / t) for t in truth_ratios]))


def truth_ratio_forget_seed_a(truth_ratios: Sequence[float]) -> float:
    """Seed A's forget-set form :math:`1 - \\mathrm{mean}_i \\min(TR_i, 1/TR_i)` (higher = still knows)."""
    return 1.0 - truth_ratio_forget(truth_ratios)


# --------------------------------------------------------------------------------- memorisation / MIA


def loss_score(nll_mean: float) -> float:
    """LOSS attack (Yeom et al. 2018): the answer's NLL_mean (members have lower loss)."""
    return float(nll_mean)


def zlib_score(nll_mean: float, text: str) -> float:
    """zlib attack (Carlini et al. 2021): NLL_mean over the zlib-compressed byte length of the text.

    .. math:: s = \\mathrm{NLL}_{mean} / |\\mathrm{zlib}(text)|
    """
    return float(nll_mean) / len(zlib.compress(text.encode("utf-8")))


def _lowest_k_mean(values: torch.Tensor, k: float) -> float:
    n = max(1, int(values.numel() * k))
    return float(torch.sort(values.float()).values[:n].mean())


def min_k_score(token_logps: torch.Tensor, *, k: float = 0.4) -> float:
    """Min-K% Prob (Shi et al., arXiv:2310.16789): minus the mean of the lowest k·n token log-probs.

    .. math:: s = -\\frac{1}{|K|} \\sum_{t \\in K} \\log p(y_t | y_{<t}),\\quad K = \\text{lowest } \\max(1, \\lfloor kn \\rfloor)

    Args:
        token_logps: (n,) answer-token log-probs of one item.
    """
    return -_lowest_k_mean(token_logps, k)


def min_k_pp_score(token_logps: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, *, k: float = 0.4) -> float:
    """Min-K%++ (Zhang et al., arXiv:2404.02936): Min-K% on log-probs standardised under the model's own
    next-token distribution at each position.

    .. math:: z_t = \\frac{\\log p(y_t) - \\mu_t}{\\sigma_t},\\quad \\mu_t = E_{v\\sim p_t}[\\log p_t(v)],\\quad
              \\sigma_t^2 = E_{v\\sim p_t}[(\\log p_t(v))^2] - \\mu_t^2; \\qquad s = -\\mathrm{mean}(\\text{lowest } k \\text{ of } z)

    Args:
        token_logps, mu, sigma: (n,) each, for one item's answer positions.
    """
    z = (token_logps - mu) / sigma.clamp(min=1e-6)
    return -_lowest_k_mean(z, k)


def mia_item_scores(row: dict, text: str) -> dict[str, float]:
    """The four MIA scores of one item from its forward-pass row (`passes.score_batch`): LOSS, zlib,
    Min-K% and Min-K%++, each loss-like (higher = looks less like a member). `text`: the scored answer."""
    return {"loss": loss_score(row["nll_mean"]), "zlib": zlib_score(row["nll_mean"], text),
            "min_k": row["min_k"], "min_k_pp": row["min_k_pp"]}


def extraction_strength(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Extraction Strength (Carlini et al. 2021 via open-unlearning): the fraction of the answer the model
    completes by itself (teacher-forced argmax) once given the shortest prefix.

    .. math:: ES = 1 - \\frac{1}{n} \\min\\{k : \\hat y_{\\ge k} = y_{\\ge k}\\}

    with k = n when no suffix matches (ES = 0). open-unlearning's loop stops at k = n−1 (gives 1/n then).

    Args:
        preds, labels: (n,) argmax predictions and true tokens at the answer positions.
    """
    n = labels.numel()
    if n == 0:
        return 0.0
    match = (preds == labels).flip(0).long()
    suffix = int(match.cumprod(0).sum())  # length of the longest all-correct suffix
    return suffix / n


def exact_memorization(preds: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact Memorization (Tirumala et al. 2022 via open-unlearning): fraction of answer tokens whose
    teacher-forced argmax is the true token. :math:`EM = \\frac1n \\sum_t 1[\\arg\\max p_t = y_t]`."""
    n = labels.numel()
    return float((preds == labels).float().mean()) if n else 0.0


# ---------------------------------------------------------------------------------------- corpus level


def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    """ROC-AUC of a loss-like MIA score: members (forget) label 0, non-members (holdout) label 1.

    0.5 = cannot tell them apart (retrained model); 1 = every member scores below every non-member.
    """
    from sklearn.metrics import roc_auc_score

    if not member_scores or not nonmember_scores:
        raise ObliviateError("MIA AUC needs member and non-member scores")
    labels = [0] * len(member_scores) + [1] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))


def privleak(auc_unlearned: float, auc_retrain: float) -> float:
    """MUSE PrivLeak (Shi et al., arXiv:2407.06460), Min-K% AUC based; 0 = like retraining.

    .. math:: \\mathrm{PrivLeak} = (AUC_{unlearned} - AUC_{retrain}) / AUC_{retrain} \\times 100
    """
    return (auc_unlearned - auc_retrain) / auc_retrain * 100.0


def forget_quality(unlearned_truth_ratios: Sequence[float], retain_truth_ratios: Sequence[float]) -> float:
    """TOFU Forget Quality: p-value of the two-sample KS test between forget-set truth ratios of the
    unlearned model and of the retain model (``scipy.stats.ks_2samp``). High = indistinguishable.

    TOFU's code feeds 1/TR; KS is invariant under a monotone map of both samples, so the p-value is equal.
    """
    from scipy.stats import ks_2samp

    if not unlearned_truth_ratios or not retain_truth_ratios:
        raise ObliviateError("forget quality needs truth ratios from both models")
    return float(ks_2samp(unlearned_truth_ratios, retain_truth_ratios).pvalue)


def forget_quality_floor(n: int, m: int) -> float:
    """The smallest p-value ks_2samp can return for samples of n and m items (fully separated samples)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.arange(n, dtype=float), np.arange(m, dtype=float) + n + 1).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean, 0 if any value is 0 (TOFU Model Utility, seed A's MU-18). Values must be >= 0."""
    from scipy.stats import hmean

    if not values:
        raise ObliviateError("harmonic mean of no values")
    if any(v < 0 for v in values):
        raise ObliviateError(f"harmonic mean needs non-negative values, got {min(values)}")
    if any(v == 0 for v in values):
        return 0.0
    return float(hmean(values))


def forget_efficacy(values: Sequence[float]) -> float:
    """Seed A's Forget Efficacy: :math:`1 - \\mathrm{mean}(ROUGE, Prob, TR_{forget}, CS, ES)` on the forget split
    (TR_forget in seed A's form 1 − mean min(TR, 1/TR))."""
    return 1.0 - float(np.mean(values))


def mcq_accuracy(predictions: Sequence[int], answers: Sequence[int]) -> float:
    """Multiple-choice accuracy: fraction of items whose highest-likelihood letter is the right one."""
    return float(np.mean([p == a for p, a in zip(predictions, answers, strict=True)]))


# ----------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Metric:
    """One metric: its function, which way is better, whether it scores an item or a corpus, and how it is
    aggregated and shown. These records drive `split_means`, `obliviate eval`'s summary and the report card's
    columns: adding a metric there means adding one record here.

    `higher_is_better` is stated for a model that should *keep* the knowledge (retain-type splits); on the
    forget split unlearning pushes item metrics down. None: the target is a value (0.5 for AUC, 0 for PrivLeak).
    `aggregate`: item metrics — "mean" (the split mean of the per-item value) or "split" (a per-split form
    computed by `split_means`: TOFU's Prob / truth-ratio forms, the entailed fraction); corpus metrics — the
    key of `aggregates` holding the value. `label`: its name in tables ("" = not shown). `card`: report-card
    columns, ((role or "agg", higher is better on it, sub-key), ...).
    """

    fn: Callable
    higher_is_better: bool | None
    level: str  # "item" | "corpus"
    needs: str  # what must be available to compute it
    aggregate: str = ""
    label: str = ""
    card: tuple = ()


_GEN, _FWD, _PERT = "generation", "forward pass", "forward pass, perturbed answers"
METRICS = {
    # item metrics (per-split means); card columns per role, with the direction that is better on that role
    "rouge_l_recall": Metric(rouge_l_recall, True, "item", _GEN, "mean", "ROUGE",
                             (("forget", False), ("retain", True), ("world_facts", True))),
    "rouge_l_f1": Metric(rouge_l_f1, True, "item", _GEN),
    "prob": Metric(probability, True, "item", _FWD, "split", "Prob", (("forget", False), ("retain", True))),
    "prob_norm": Metric(normalised_probability, True, "item", _PERT),
    "truth_ratio": Metric(truth_ratio, False, "item", _PERT, "split", "TR", (("forget", True), ("retain", True))),
    "token_entropy": Metric(token_entropy, True, "item", _GEN, "mean", "TE", (("forget", True),)),
    "cosine_similarity": Metric(cosine_similarity, True, "item", "generation, before-unlearning generation", "mean",
                                "CS", (("forget", False),)),
    "entailment_score": Metric(entailed, True, "item", "generation, an NLI model (--nli)", "split", "ES",
                               (("forget", False),)),
    "refusal_rate": Metric(refusal, False, "item", _GEN, "mean", "Refusal", (("forget", True), ("retain", False))),
    "extraction_strength": Metric(extraction_strength, True, "item", _FWD, "mean", "ExtStr"),
    "exact_memorization": Metric(exact_memorization, True, "item", _FWD, "mean", "EM"),
    "mia_loss": Metric(loss_score, None, "item", _FWD),
    "mia_zlib": Metric(zlib_score, None, "item", _FWD),
    "mia_min_k": Metric(min_k_score, None, "item", _FWD),
    "mia_min_k_pp": Metric(min_k_pp_score, None, "item", "forward pass (logits)"),
    "truth_ratio_retain": Metric(truth_ratio_retain, True, "corpus", "truth ratios"),
    "truth_ratio_forget": Metric(truth_ratio_forget, True, "corpus", "truth ratios (forget split)"),
    "truth_ratio_forget_seed_a": Metric(truth_ratio_forget_seed_a, False, "corpus", "truth ratios (forget split)"),
    # corpus metrics, in the order of the summary and the report card
    "forget_quality": Metric(forget_quality, True, "corpus", "forget truth ratios of this and the retain model",
                             "forget_quality", "Forget Quality", (("agg", True),)),
    "model_utility": Metric(harmonic_mean, True, "corpus", "retain, world-facts (and real-authors) splits",
                            "model_utility", "Model Utility", (("agg", True),)),
    "forget_efficacy": Metric(forget_efficacy, True, "corpus", "forget ROUGE, Prob, TR, cosine, entailment",
                              "forget_efficacy", "Forget Efficacy", (("agg", True),)),
    "mu18": Metric(harmonic_mean, True, "corpus", "model utility parts + token entropy, cosine, entailment",
                   "mu18", "MU-18", (("agg", True),)),
    "forget_efficacy_no_es": Metric(forget_efficacy, True, "corpus", "forget ROUGE, Prob, TR, cosine (no NLI)",
                                    "forget_efficacy_no_es", "FE (no ES)", (("agg", True),)),
    "mu18_no_es": Metric(harmonic_mean, True, "corpus", "model utility parts + token entropy, cosine (no NLI)",
                         "mu18_no_es", "MU-18 (no ES)", (("agg", True),)),
    "mia_auc": Metric(mia_auc, None, "corpus", "members and non-members (forget/holdout, privleak, mia splits)",
                      "mia", "MIA AUC (Min-K)", (("agg", None, "min_k"),)),
    "privleak": Metric(privleak, None, "corpus", "Min-K% AUC of this model and of the retain model (or MUSE's "
                       "published AUC)", "privleak", "PrivLeak", (("agg", None),)),
    "verbmem": Metric(rouge_l_f1, False, "corpus", "MUSE verbmem prompt/gt", "verbmem", "VerbMem"),
    "knowmem": Metric(rouge_l_f1, False, "corpus", "MUSE knowmem forget QA (+ICL shots)", "knowmem", "KnowMem forget"),
    "knowmem_retain": Metric(rouge_l_f1, True, "corpus", "MUSE knowmem retain QA (+ICL shots)", "knowmem_retain",
                             "KnowMem retain"),
    "mcq_accuracy": Metric(mcq_accuracy, True, "corpus", "a question/choices/answer split", "mcq", "MCQ accuracy"),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise ObliviateError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]
