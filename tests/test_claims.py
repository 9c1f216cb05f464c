"""report.claims: the interval arithmetic against scipy, the verdict rules, and claims read from saved results."""

import json
import math

import pytest
from scipy import stats

from obliviate.report import claims as C


def test_welch_interval_matches_scipy():
    a, b = [1.0, 2.0, 3.0], [0.0, 1.0]
    d, lo, hi = C.welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert d == pytest.approx(1.5)
    assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_t_interval_by_hand():
    m, lo, hi = C.t_interval([0.8, 1.0, 1.2])  # mean 1, sd 0.2, t(0.975, 2) = 4.302653
    h = 4.302653 * 0.2 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((1.0, 1.0 - h, 1.0 + h), rel=1e-6)


def _runs(values: dict[str, list[float]], key=("agg", "forget_efficacy_no_es")) -> dict:
    """recipe -> seed runs whose eval.json holds `values` at `key`."""
    def ev(v):
        return {"aggregates": {key[1]: v}} if key[0] == "agg" else {"splits": {key[0]: {"means": {key[1]: v}}}}
    return {r: [{"seed": i, "eval": ev(v)} for i, v in enumerate(vs)] for r, vs in values.items()}


@pytest.mark.parametrize("a,b,verdict", [
    ([0.9, 0.92, 0.91], [0.5, 0.52, 0.51], C.HOLDS),        # clearly higher
    ([0.5, 0.52, 0.51], [0.9, 0.92, 0.91], C.FAILS),        # clearly lower
    ([0.5, 0.9, 0.1], [0.5, 0.52, 0.51], C.INCONCLUSIVE),   # the interval straddles 0
])
def test_greater_part_verdicts(a, b, verdict):
    part = C.Comparison("x", "a", C.eval_value(("agg", "forget_efficacy_no_es")), "b")
    out = C.test_part(part, _runs({"a": a, "b": b}), None)
    assert out["verdict"] == verdict
    assert out["diff"] == pytest.approx(sum(a) / 3 - sum(b) / 3)


def test_lower_part_flips_the_difference():
    part = C.Comparison("x", "a", C.eval_value(("retain", "refusal_rate")), "b", lower=True)
    out = C.test_part(part, _runs({"a": [0.0, 0.1, 0.05], "b": [0.6, 0.7, 0.65]}, ("retain", "refusal_rate")), None)
    assert out["verdict"] == C.HOLDS and out["diff"] == pytest.approx(0.6)


def test_at_least_part_uses_the_ratio_to_the_target():
    part = C.Comparison("x", "a", C.eval_value(("agg", "model_utility")), kind="at_least", threshold=0.9)
    runs = _runs({"a": [0.47, 0.48, 0.49]}, ("agg", "model_utility"))
    target = {"aggregates": {"model_utility": 0.5}}
    out = C.test_part(part, runs, target)
    assert out["ratio"] == pytest.approx(0.96) and out["verdict"] == C.HOLDS
    low = C.test_part(part, _runs({"a": [0.30, 0.31, 0.32]}, ("agg", "model_utility")), target)
    assert low["verdict"] == C.FAILS


def test_missing_recipe_or_one_seed_is_not_computed_with_the_reason():
    part = C.Comparison("x", "a", C.eval_value(("agg", "forget_efficacy_no_es")), "b")
    out = C.test_part(part, _runs({"a": [0.9]}), None)
    assert out["verdict"] == C.NOT_COMPUTED and "a: 1 seed(s)" in out["why"] and "b: 0 seed(s)" in out["why"]


def test_claim_verdict_combines_parts():
    p = lambda v: {"label": v, "verdict": v, "why": "r"}  # noqa: E731
    assert C.verdict_of([p(C.HOLDS), p(C.HOLDS)])[0] == C.HOLDS
    assert C.verdict_of([p(C.HOLDS), p(C.INCONCLUSIVE)])[0] == C.INCONCLUSIVE
    assert C.verdict_of([p(C.INCONCLUSIVE), p(C.FAILS)])[0] == C.FAILS
    assert C.verdict_of([p(C.FAILS), p(C.NOT_COMPUTED)])[0] == C.NOT_COMPUTED


def test_relearn_jailbreak_and_continual_values():
    run = {"relearn": {"curve": [{"step": 0, "prob": 0.1}, {"step": 10, "prob": 0.7}]},
           "jailbreak": {"metrics": {"seen": {"with": {"prob": 0.3}, "without": {"prob": 0.1}}}}}
    assert C.relearn_value("prob")(run) == 0.7
    assert C.jailbreak_value("seen", "with", "prob")(run) == 0.3
    assert C.jailbreak_value("unseen", "with", "prob")(run) is None
    info = {"rows": [{"task": 0, "model_utility": 0.8}, {"task": 1, "model_utility": 0.7},
                     {"task": 2, "model_utility": 0.5}]}
    assert C.continual_drop()(info) == pytest.approx(0.3)


def test_continual_groups_reads_each_seed(tmp_path):
    for name, seeds in (("npo_gd", 2), ("me_gd", 1)):
        for s in range(seeds):
            d = tmp_path / "continual" / name / f"seed{s}"
            d.mkdir(parents=True)
            (d / "continual.json").write_text(json.dumps({"plan": [], "rows": [{"task": 0}], "seed": s}))
            (d / "stage.json").write_text(json.dumps({"key": {}, "seconds": 1.0}))  # a finished pipeline stage
    groups = C.continual_groups(tmp_path)
    assert {k: len(v) for k, v in groups.items()} == {"npo_gd": 2, "me_gd": 1}


def test_matched_claims_count_only_runs_stopped_at_the_retain_level():
    """A run counts at matched forgetting when its stop rule fired and that step is the one kept."""
    value = C.at_matched_forgetting(C.eval_value(("agg", "model_utility")))
    ev = {"aggregates": {"model_utility": 0.42}}
    assert value({"eval": ev, "kept": {"ended": "stop", "kept_step": 12, "stopped_at": 12}}) == 0.42
    assert value({"eval": ev, "kept": {"ended": "cap", "kept_step": 20, "stopped_at": 20}}) is None  # never matched
    assert value({"eval": ev, "kept": {"ended": "stop", "kept_step": 8, "stopped_at": 12}}) is None  # guard kept 8
    assert value({"eval": ev, "kept": None}) is None  # fixed protocol: no trajectory
    part = C.CLAIMS["matched_me_vs_npo_utility"].parts[0]
    runs = {"me+gd": [{"eval": {"aggregates": {"model_utility": m}}, "kept": {"ended": "stop", "kept_step": 4,
                                                                             "stopped_at": 4}} for m in (0.50, 0.52)],
            "npo+gd": [{"eval": {"aggregates": {"model_utility": m}}, "kept": {"ended": "stop", "kept_step": 8,
                                                                              "stopped_at": 8}} for m in (0.40, 0.41)]}
    out = C.test_part(part, runs, None)
    assert out["verdict"] == C.HOLDS and out["diff"] == pytest.approx(0.51 - 0.405)


def _quant_run(model: dict, retain: dict) -> dict:
    """A seed run's quantize.json rows: {bits: forget Prob} of the model and the retain control (target Prob 0.5)."""
    rows = [{"model": who, "bits": b, "forget_prob": p, "recovery_prob": p / 0.5}
            for who, probs in (("model", model), ("retain", retain)) for b, p in probs.items()]
    return {"quantize": {"rows": rows}}


def test_quantization_claims_compare_rows_of_the_same_runs():
    runs = {"npo+gd": [_quant_run({None: 0.05 + d, 8: 0.06 + d, 4: 0.30 + d}, {None: 0.04, 8: 0.04, 4: 0.05})
                       for d in (0.0, 0.01, 0.02)]}
    assert C.quantize_value(4)(runs["npo+gd"][1]) == pytest.approx(0.31)
    assert C.quantize_gain(4)(runs["npo+gd"][0]) == pytest.approx((0.30 - 0.05) / 0.5)
    assert C.quantize_gain(4, "retain")(runs["npo+gd"][0]) == pytest.approx(0.01 / 0.5)
    four_vs_eight = C.CLAIMS["quantization_4bit_restores"].parts[0]
    out = C.test_part(four_vs_eight, runs, None)
    assert out["verdict"] == C.HOLDS and out["diff"] == pytest.approx(0.24)
    npo_vs_retain = C.CLAIMS["quantization_recovers_unlearning"].parts[1]
    out = C.test_part(npo_vs_retain, runs, None)
    assert out["verdict"] == C.HOLDS and out["diff"] == pytest.approx((0.25 - 0.01) / 0.5)
    ga = C.test_part(C.CLAIMS["quantization_recovers_unlearning"].parts[0], runs, None)
    assert ga["verdict"] == C.NOT_COMPUTED and ga["why"] == "ga+gd: 0 seed(s) with a value, need 2"
