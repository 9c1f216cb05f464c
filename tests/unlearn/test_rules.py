"""The stop / guard / select grammar (issue 23 §2, §3): valid rules evaluate to hand-worked values, bad ones are
one-line errors naming the rule, and a rule that never fires is just false."""

import math

import pytest

from obliviate import ObliviateError
from obliviate.unlearn import UnlearnConfig
from obliviate.unlearn.rules import parse_rule, parse_select

NAMES = {"forget_prob", "retain_prob", "forget_gap", "mia_auc"}


@pytest.mark.parametrize("text, current, start, ref, expected", [
    ("forget_prob <= 0.30", {"forget_prob": 0.29}, None, None, True),
    ("forget_prob <= 0.30", {"forget_prob": 0.31}, None, None, False),
    ("forget_prob <= .3", {"forget_prob": 0.3}, None, None, True),
    # 0.32 <= 0.27 + 0.05 = 0.32: holds (<=), 0.33 does not
    ("forget_prob <= retain:forget_prob + 0.05", {"forget_prob": 0.32}, None, {"forget_prob": 0.27}, True),
    ("forget_prob <= retain:forget_prob + 0.05", {"forget_prob": 0.33}, None, {"forget_prob": 0.27}, False),
    # bare start = the left metric at step 0: 0.9 × 0.8 = 0.72 (floating point: just above it)
    ("retain_prob >= 0.9 * start", {"retain_prob": 0.7201}, {"retain_prob": 0.8}, None, True),
    ("retain_prob >= 0.9 × start", {"retain_prob": 0.71}, {"retain_prob": 0.8}, None, False),
    ("retain_prob > 0.9*start:retain_prob", {"retain_prob": 0.73}, {"retain_prob": 0.8}, None, True),
    # precedence: 1 − 2 × 0.25 = 0.5; unary minus; parentheses: (1 − 0.5) × 2 = 1
    ("forget_prob < 1 − 2 × 0.25", {"forget_prob": 0.49}, None, None, True),
    ("-forget_prob >= -0.5", {"forget_prob": 0.5}, None, None, True),
    ("mia_auc <= (1 - 0.5) * 2 - 0.4", {"mia_auc": 0.6}, None, None, True),
    ("forget_prob <= 0.3 and retain_prob >= 0.5", {"forget_prob": 0.2, "retain_prob": 0.4}, None, None, False),
    ("forget_prob <= 0.3 and retain_prob >= 0.5", {"forget_prob": 0.2, "retain_prob": 0.6}, None, None, True),
    ("match:retain", {"forget_prob": 0.26}, None, {"forget_prob": 0.27}, True),
    ("match:retain", {"forget_prob": 0.28}, None, {"forget_prob": 0.27}, False),
])
def test_rules_evaluate_to_hand_worked_values(text, current, start, ref, expected):
    assert parse_rule(text, NAMES).holds(current, start, ref) is expected


def test_a_missing_or_nan_metric_makes_a_comparison_false():
    rule = parse_rule("forget_prob <= 0.3", NAMES)
    assert not rule.holds({"forget_prob": None}) and not rule.holds({"forget_prob": math.nan})
    assert not parse_rule("forget_prob > 0.3", NAMES).holds({"forget_prob": None})  # not "the other way round"


def test_a_rule_that_never_fires_is_false_along_a_whole_trajectory():
    rule = parse_rule("forget_prob <= 0.05", NAMES)
    assert not any(rule.holds({"forget_prob": p}) for p in (0.9, 0.6, 0.3, 0.1, 0.06))


@pytest.mark.parametrize("text, message", [
    ("forget_prob <=", "ends too early"),
    ("forget_prob 0.3", "expected a comparison"),
    ("forget_prob == 0.3", "cannot read"),
    ("forgot_prob <= 0.3", "unknown metric 'forgot_prob'"),
    ("forget_prob <= retain:nope", "unknown metric 'nope'"),
    ("1 <= start", "bare 'start' needs exactly one metric"),
    ("forget_prob + retain_prob <= start", "bare 'start' needs exactly one metric"),
    ("forget_prob <= 0.3)", "unexpected ')'"),
    ("(forget_prob <= 0.3", "missing ')'"),
    ("__import__('os').system('x') <= 1", "cannot read"),
    ("", "empty"),
])
def test_bad_rules_are_one_line_errors_naming_the_rule(text, message):
    with pytest.raises(ObliviateError) as e:
        parse_rule(text, NAMES)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_without_known_metrics_only_the_syntax_is_checked():
    assert parse_rule("anything_at_all <= 1").metrics() == {"anything_at_all"}
    assert parse_rule("forget_prob <= retain:forget_prob").reads_reference()
    assert not parse_rule("retain_prob >= 0.9 * start").reads_reference()


def test_select_min_max_and_subject_to():
    sel = parse_select("max forget_gap subject to retain_prob >= 0.95 * start", NAMES)
    start = {"retain_prob": 0.8}
    # 0.95 × 0.8 = 0.76: the point at 0.75 is not admissible whatever its gap
    assert not sel.admissible({"forget_gap": 0.9, "retain_prob": 0.75}, start)
    assert sel.admissible({"forget_gap": 0.4, "retain_prob": 0.77}, start)
    assert sel.score({"forget_gap": 0.4, "retain_prob": 0.77}, start) == 0.4
    assert sel.better(0.5, 0.4) and not sel.better(0.4, 0.4) and sel.better(0.1, None)  # ties keep the earlier
    low = parse_select("min forget_prob", NAMES)
    assert low.better(0.2, 0.3) and not low.better(0.3, 0.2) and low.constraint is None
    assert parse_select("min forget_prob - retain:forget_prob", NAMES).reads_reference()


@pytest.mark.parametrize("text, message", [
    ("forget_prob", "starts with min or max"),
    ("min", "starts with min or max"),
    ("min start", "bare 'start'"),
    ("max nope", "unknown metric 'nope'"),
    ("max forget_gap subject to retain_prob", "ends too early"),
])
def test_bad_selections_are_one_line_errors(text, message):
    with pytest.raises(ObliviateError, match=message):
        parse_select(text, NAMES)


@pytest.mark.parametrize("kw, message", [
    (dict(stop="forget_prob <= 0.3"), "needs evaluation points"),
    (dict(eval_every="epoch", keep="best"), "keep=best needs select"),
    (dict(eval_every=2, select="min forget_prob"), "set keep=best too"),
    (dict(eval_every="often"), "eval_every 'often'"),
    (dict(eval_every=0), r"eval_every must be a finite number in \[1, 1000000\], got 0"),
    (dict(eval_every=1, keep="first"), "keep 'first'"),
    (dict(eval_every=1, stop="forget_prob <<= 1"), "rule 'forget_prob <<= 1'"),
    (dict(eval_every=1, guard="retain_prob >= 0.9 * start", recipe="ga+gd+wa"), "smoothing=wa"),
    (dict(eval_every=1, probe_size=0), "probe_size"),
])
def test_config_checks_the_rules_before_any_work(kw, message):
    with pytest.raises(ObliviateError, match=message):
        UnlearnConfig(**kw)


def test_config_reads_eval_every_from_text():
    assert UnlearnConfig(eval_every="5").eval_every == 5
    assert UnlearnConfig(eval_every="epoch", stop="match:retain").stop == "match:retain"
