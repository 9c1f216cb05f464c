"""Config precedence and safety (issue 9): flag > key=value override > YAML > default; recipe parts merge or
conflict with one line; overrides anywhere on the command line; pickle/remote-code opt-ins are flags only."""

import pytest

from obliviate import ObliviateError
from obliviate.config import load_config


def test_precedence_flag_over_override_over_yaml_over_default(tmp_path):
    from obliviate.unlearn import UnlearnConfig

    y = tmp_path / "c.yaml"
    y.write_text("seed: 1\nlr: 0.1\nnpo_beta: 0.3\n")
    cfg = load_config(UnlearnConfig, y, ["seed=2", "lr=0.2"], seed=3)
    assert (cfg.seed, cfg.lr, cfg.npo_beta, cfg.grad_clip) == (3, 0.2, 0.3, 1.0)


def test_recipe_parts_merge_across_flag_override_and_yaml(tmp_path):
    from obliviate.unlearn import UnlearnConfig

    cfg = load_config(UnlearnConfig, None, ["smoothing=sam"], recipe="npo+gd")
    assert (cfg.recipe, cfg.objective, cfg.regularizer, cfg.smoothing) == ("npo+gd+sam", "npo", "gd", "sam")
    y = tmp_path / "c.yaml"
    y.write_text("recipe: ga\nsmoothing: sam\n")
    cfg = load_config(UnlearnConfig, y, [], recipe="npo+gd")  # the flag's recipe beats YAML's; smoothing merges
    assert cfg.recipe == "npo+gd+sam"
    with pytest.raises(ObliviateError, match="recipe 'npo\\+gd' has objective 'npo' but objective='ga'"):
        load_config(UnlearnConfig, None, ["objective=ga"], recipe="npo+gd")


@pytest.mark.parametrize("key", ["allow_pickle", "trust_remote_code"])
def test_safety_opt_ins_are_refused_in_config_and_override(tmp_path, key):
    from obliviate.classifier.steal import StealConfig
    from obliviate.evaluate import EvalConfig

    with pytest.raises(ObliviateError, match=f"'{key}' cannot be set in a config or override"):
        load_config(StealConfig, None, [f"{key}=true"])
    y = tmp_path / "c.yaml"
    y.write_text(f"{key}: true\n")
    with pytest.raises(ObliviateError, match="pass the command-line flag --"):
        load_config(EvalConfig, y)


def test_overrides_anywhere_and_unknown_flags_still_refused(capsys):
    from obliviate.cli import parse

    args = parse(["unlearn", "lr=1e-3", "--model", "m", "--data", "d", "npo_beta=0.2", "--out", "o", "seed=4"])
    assert args.overrides == ["lr=1e-3", "npo_beta=0.2", "seed=4"] and args.model == "m"
    with pytest.raises(SystemExit):
        parse(["unlearn", "--model", "m", "--data", "d", "--out", "o", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    from obliviate.cli import main

    assert main(["unlearn", "--model", "m", "--data", "d", "--out", "o", "seed=1", "stray"]) == 2
    assert "override 'stray' is not of the form key=value" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-1e-3", "0"])
def test_non_finite_or_non_positive_lr_is_one_line(value):
    from obliviate.attack.relearn import RelearnConfig
    from obliviate.models.finetune import FinetuneConfig
    from obliviate.unlearn import UnlearnConfig

    for cls in (UnlearnConfig, FinetuneConfig, RelearnConfig):
        with pytest.raises(ObliviateError, match=r"lr must be a finite number in \(0, 10\]"):
            load_config(cls, None, [f"lr={value}"])


def test_seed_everything_seeds_python_numpy_and_torch():
    import random

    import numpy as np
    import torch

    from obliviate.config import seed_everything

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    seed_everything(11)
    first = draws()
    seed_everything(11)
    assert draws() == first
    seed_everything(12)
    assert all(a != b for a, b in zip(draws(), first))
