"""`tune --n-jobs > 1` says it is not seed-determined; the objective's `subject to` constraint reaches Optuna (both
the Trial.set_constraint path and the TPESampler constraints_func path) and an infeasible trial is never the best."""

import warnings
from types import SimpleNamespace

import pytest

optuna = pytest.importorskip("optuna")

from obliviate.pipeline.tune import (PARALLEL_WARNING, TuneConfig, _constrain, _violation, open_study,  # noqa: E402
                                     summarize, warn_parallel)
from obliviate.pipeline.tunespace import parse_objective  # noqa: E402

NAMES = ["forget_prob", "retain_prob"]


def test_n_jobs_above_one_warns_that_timing_matters():
    with pytest.warns(UserWarning, match="results depend on timing, not only on the seed"):
        assert warn_parallel(TuneConfig(n_jobs=2)) is False
    assert "\n" not in PARALLEL_WARNING
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_parallel(TuneConfig(n_jobs=1)) is True


# (forget_prob, retain_prob) per trial: trial 1 forgets most but breaks the constraint (retain_prob < 0.5)
TRIALS = [(0.6, 0.9), (0.1, 0.2), (0.4, 0.8)]


def _run(study, objective):
    inputs = SimpleNamespace(start={"forget_prob": 0.9, "retain_prob": 0.9}, reference=None)

    def fn(trial):
        forget, retain = TRIALS[trial.number]
        metrics = {"forget_prob": forget, "retain_prob": retain}
        trial.set_user_attr("metrics", metrics)
        _constrain(trial, objective, metrics, inputs)
        return objective.values(metrics, inputs.start, None)[0]

    study.optimize(fn, n_trials=len(TRIALS))


def test_an_infeasible_trial_is_never_the_best(tmp_path):
    objective = parse_objective("min forget_prob subject to retain_prob >= 0.5", NAMES)
    study = open_study(TuneConfig(), objective, "ga+gd", tmp_path)
    _run(study, objective)
    s = summarize(study, objective, 0)
    assert [t["feasible"] for t in s["trials"]] == [True, False, True]
    assert [t["number"] for t in s["best"]] == [2]  # not trial 1 (lower forget Prob, retain Prob 0.2 < 0.5)
    frozen = study.trials
    assert [_violation(t) for t in frozen] == [[0.0], [1.0], [0.0]]
    if hasattr(optuna.trial.FrozenTrial, "constraints"):  # Optuna >= 5: Trial.set_constraint stores it
        assert [t.constraints for t in frozen] == [{"subject_to": v} for v in (0.0, 1.0, 0.0)]


def test_the_constraints_func_path(tmp_path):
    """Optuna 4's path (TPESampler constraints_func reading the `violation` attribute) on this Optuna."""
    objective = parse_objective("min forget_prob subject to retain_prob >= 0.5", NAMES)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, constraints_func=_violation))
    _run(study, objective)
    assert [t.user_attrs["violation"] for t in study.trials] == [0.0, 1.0, 0.0]
    assert [t["number"] for t in summarize(study, objective, 0)["best"]] == [2]
