"""`obliviate tune`'s declarations: the search space, the objective, the best-parameters YAML, the front."""

import pytest

from obliviate import ObliviateError
from obliviate.config import load_config
from obliviate.pipeline.tunespace import (Param, default_space, make_param, parse_objective, parse_space, recipe_yaml,
                                          trial_config)
from obliviate.report.tune import pareto_front
from obliviate.unlearn import UnlearnConfig

NAMES = ["forget_prob", "retain_prob", "forget_truth_ratio", "mia_auc", "forget_gap"]


def test_space_forms():
    space = parse_space(["lr=1e-5..1e-2:log", "npo_beta=0.05..0.5", "npo_granularity=sequence|token_mean",
                         "rs_samples=1..4"])
    assert space["lr"] == Param("lr", 1e-5, 1e-2, log=True)
    assert space["npo_beta"] == Param("npo_beta", 0.05, 0.5)
    assert space["npo_granularity"].choices == ("sequence", "token_mean")
    assert space["rs_samples"].integer  # an int field of UnlearnConfig gets integer suggestions


def test_space_file(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("lr: 1e-5..1e-3:log\nlam: {low: 0.5, high: 2}\nme_form: [code, paper]\n")
    space = parse_space([str(f)])
    assert space["lr"].log and space["lam"] == Param("lam", 0.5, 2.0) and space["me_form"].choices == ("code", "paper")


@pytest.mark.parametrize("item, says", [
    ("foo=1..2", "'foo' is not an UnlearnConfig field"),
    ("lr=2..1", "low 2 must be below high 1"),
    ("lr=0..1:log", "a log range needs low > 0"),
    ("lr=a..b", "'a' is not a number"),
    ("lr=1e-5..1e-3:lin", "is not low..high"),
    ("recipe=npo|ga", "names the run"),
    ("npo_granularity=sequence|nope", "npo_granularity 'nope'"),
    ("rs_samples=1.5..3", "integer field"),
    ("lr", "is not key=low..high"),
    ("schedule=1..2", "give its values as a|b|c"),
])
def test_bad_space_is_one_line(item, says):
    with pytest.raises(ObliviateError, match=says.replace("(", r"\(").replace(".", r"\.")) as e:
        parse_space([item])
    assert "\n" not in str(e.value)


def test_default_space_from_the_records():
    """The recipe's own hyper-parameters come from the UnlearnConfig fields named after its registry keys."""
    npo = default_space(UnlearnConfig(recipe="npo+gd"), "tiny")
    assert set(npo) == {"lr", "epochs", "npo_beta", "lam"}
    assert npo["lr"] == Param("lr", 5e-5, 5e-3, log=True)  # tiny's unlearn lr 5e-4, ×/÷ 10
    assert npo["npo_beta"].low == pytest.approx(0.01) and npo["npo_beta"].high == pytest.approx(1.0)
    assert set(default_space(UnlearnConfig(recipe="me+gd"), "tiny")) == {"lr", "epochs", "lam"}
    assert "sam_rho" in default_space(UnlearnConfig(recipe="npo+gd+sam"), "tiny")
    assert set(default_space(UnlearnConfig(recipe="ga"), "tiny")) == {"lr", "epochs"}
    wa = default_space(UnlearnConfig(recipe="ga+gd+wa"), "tiny")["wa_start"]  # a fraction: never above 1
    assert wa.high == pytest.approx(0.8)
    assert "epochs" not in default_space(UnlearnConfig(recipe="ga", max_steps=5), "tiny")


def test_objective_parsing():
    o = parse_objective("min forget_prob subject to retain_prob >= 0.9 * start", NAMES)
    assert o.directions == ["minimize"] and o.constraint is not None
    assert o.axes() == [("forget_prob", "minimize"), ("retain_prob", "maximize")]
    assert o.values({"forget_prob": 0.2, "retain_prob": 0.8}, {"retain_prob": 0.85}, None) == [0.2]
    assert o.feasible({"forget_prob": 0.2, "retain_prob": 0.8}, {"retain_prob": 0.85}, None)  # 0.8 >= 0.765
    assert not o.feasible({"forget_prob": 0.2, "retain_prob": 0.7}, {"retain_prob": 0.85}, None)
    p = parse_objective("pareto max forget_gap, max retain_prob", NAMES)
    assert p.directions == ["maximize", "maximize"] and p.constraint is None
    assert parse_objective("max forget_gap", NAMES).axes() is None


@pytest.mark.parametrize("text, says", [
    ("min forget_prbo", "unknown metric 'forget_prbo'"),
    ("min forget_prob subject to utility >= 0.9 * start", "unknown metric 'utility'"),
    ("lowest forget_prob", "starts with min or max"),
    ("pareto max forget_gap", "pareto needs two or more"),
    ("", "starts with min or max|empty"),
])
def test_bad_objective_is_one_line(text, says):
    with pytest.raises(ObliviateError, match=says) as e:
        parse_objective(text, NAMES)
    assert "\n" not in str(e.value) and str(e.value).startswith("objective")


def test_best_yaml_round_trips(tmp_path):
    """best.yaml loads with load_config(UnlearnConfig, ...) into the trial's config."""
    base = UnlearnConfig(recipe="npo+gd", batch_size=4, eval_every="epoch")
    values = {"lr": 3.3e-4, "npo_beta": 0.21, "epochs": 4.5}
    cfg = trial_config(base, values)
    f = tmp_path / "best.yaml"
    f.write_text(recipe_yaml(cfg, values, "# obliviate unlearn --config best.yaml\n"))
    loaded = load_config(UnlearnConfig, f)
    assert loaded == cfg
    assert loaded.lr == 3.3e-4 and loaded.npo_beta == 0.21 and loaded.batch_size == 4 and loaded.recipe == "npo+gd"
    assert "me_form" not in f.read_text()  # defaults are not repeated


def test_trial_values_are_coerced():
    cfg = trial_config(UnlearnConfig(recipe="npo+gd"), {"npo_granularity": "token_mean", "rs_samples": 2})
    assert cfg.npo_granularity == "token_mean" and cfg.rs_samples == 2


def test_pareto_front_by_hand():
    """Points (forget_prob ↓, retain_prob ↑): (0.2, 0.9) dominates (0.3, 0.8); (0.1, 0.5) and (0.4, 0.95) are on the
    front; (0.2, 0.9) too. Negating the first axis makes both maximised."""
    points = [(0.2, 0.9), (0.3, 0.8), (0.1, 0.5), (0.4, 0.95), (0.2, 0.9)]
    assert pareto_front(points, (False, True)) == [0, 2, 3, 4]
    assert pareto_front(points, (True, True)) == [3]  # maximising both: (0.4, 0.95) dominates every other point


def test_make_param_rejects_bad_mapping():
    with pytest.raises(ObliviateError, match="low, high and optionally log"):
        make_param("lr", {"low": 1e-5, "hi": 1e-3})


def test_pruners_and_storage(tmp_path):
    optuna = pytest.importorskip("optuna")
    from obliviate.pipeline.tune import TuneConfig, pruner_for, storage_for

    single = parse_objective("min forget_prob", NAMES)
    pareto = parse_objective("pareto min forget_prob, max retain_prob", NAMES)
    assert isinstance(pruner_for(TuneConfig(), single), optuna.pruners.MedianPruner)
    assert isinstance(pruner_for(TuneConfig(pruner="hyperband"), single), optuna.pruners.HyperbandPruner)
    assert isinstance(pruner_for(TuneConfig(), pareto), optuna.pruners.NopPruner)  # the default for a pareto study
    with pytest.raises(ObliviateError, match="pareto objective"):
        pruner_for(TuneConfig(pruner="median"), pareto)  # a setting the user gave is used, or refused
    assert storage_for(None, tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    assert isinstance(storage_for(f"journal:{tmp_path / 'j.log'}", tmp_path), optuna.storages.JournalStorage)
    with pytest.raises(ObliviateError, match="RDB URL"):
        storage_for("study.db", tmp_path)


@pytest.mark.parametrize("values, says", [({"pruner": "random"}, "pruner 'random'"), ({"n_trials": 0}, "n_trials"),
                                          ({"n_trials": None}, "give n_trials or timeout"),
                                          ({"timeout": -1.0}, r"timeout must be a finite number in \(0, 1e9\], got -1.0")])
def test_tune_config_is_checked(values, says):
    from obliviate.pipeline.tune import TuneConfig

    with pytest.raises(ObliviateError, match=says):
        TuneConfig(**values)
