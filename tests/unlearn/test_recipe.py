"""Recipe parsing and config validation: exact registry keys, one-line errors listing what exists."""

import pytest

from obliviate import ObliviateError
from obliviate.config import load_config
from obliviate.unlearn import OBJECTIVES, REGULARIZERS, SMOOTHERS, UnlearnConfig, parse_recipe


def test_registries_hold_the_spec_names():
    assert list(OBJECTIVES) == ["ga", "npo", "simnpo", "me", "idk", "dpo", "rmu", "wga", "satimp", "undial", "ceu"]
    assert list(REGULARIZERS) == ["gd", "kl", "ap"]
    assert list(SMOOTHERS) == ["sam", "rs", "gp", "cr", "wa"]


@pytest.mark.parametrize("name,expected", [
    ("ga", ("ga", None, None)),
    ("npo+gd+sam", ("npo", "gd", "sam")),
    ("idk+ap", ("idk", "ap", None)),
    ("dpo+kl", ("dpo", "kl", None)),
    ("NPO+GD+WA", ("npo", "gd", "wa")),
    ("me+rs", ("me", None, "rs")),
])
def test_parse_recipe(name, expected):
    p = parse_recipe(name)
    assert (p["objective"], p["regularizer"], p["smoothing"]) == expected


@pytest.mark.parametrize("name,fragment", [
    ("npx+gd", "unknown part 'npx'"),
    ("npo+ga", "two objective parts"),
    ("ga+sam+rs", "two smoothing parts"),
    ("gd+kl", "two regularizer parts"),
    ("gd+sam", "no forget objective"),
    ("simnp", "unknown part"),  # no substring matching
    ("", "empty"),
])
def test_bad_recipes_are_one_line_errors_listing_parts(name, fragment):
    with pytest.raises(ObliviateError) as e:
        parse_recipe(name)
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg
    if "unknown" in fragment:
        assert "objective: ga, npo, simnpo, me, idk, dpo, rmu" in msg


def test_config_from_recipe_and_fields_agree():
    cfg = UnlearnConfig(recipe="npo+gd+sam")
    assert (cfg.objective, cfg.regularizer, cfg.smoothing, cfg.recipe) == ("npo", "gd", "sam", "npo+gd+sam")
    cfg = UnlearnConfig(objective="idk", regularizer="ap")
    assert cfg.recipe == "idk+ap"


@pytest.mark.parametrize("kw,fragment", [
    ({"objective": "npx"}, "objective 'npx' is unknown"),
    ({"me_form": "both"}, "me_form 'both'"),
    ({"npo_granularity": "token"}, "npo_granularity"),
    ({"batch_size": 0}, "batch_size must be a finite number in "),
    ({"recipe": "rmu", "lora": True}, "cannot be combined with lora"),
    ({"npo_beta": 0.0}, "npo_beta must be a finite number in (0"),
])
def test_config_validation(kw, fragment):
    with pytest.raises(ObliviateError, match=fragment.replace("(", r"\(")):
        UnlearnConfig(**kw)


def test_yaml_and_overrides_fill_the_config(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("recipe: npo+gd\nnpo_beta: 0.2\nlr: 1e-4\n")
    cfg = load_config(UnlearnConfig, f, ["npo_granularity=token_mean", "lam=0.5"])
    assert (cfg.recipe, cfg.npo_beta, cfg.lr, cfg.npo_granularity, cfg.lam) == ("npo+gd", 0.2, 1e-4, "token_mean", 0.5)
    with pytest.raises(ObliviateError, match="unknown key"):
        load_config(UnlearnConfig, None, ["npo_bta=0.2"])


def test_size_defaults_fill_missing_values_only():
    from obliviate.models.init import TRAINING_DEFAULTS

    p = UnlearnConfig(lr=0.5).hyperparams("tiny")
    d = TRAINING_DEFAULTS["tiny"]
    assert (p.lr, p.epochs, p.batch_size) == (0.5, d.unlearn_epochs, d.unlearn_batch_size)
    assert UnlearnConfig().hyperparams(None).lr == 1e-5  # real models: the papers' value
