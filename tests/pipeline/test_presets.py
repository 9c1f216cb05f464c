"""Command presets: shipped as package data, each opening with the command that runs it, and layered in the
documented order: flag > key=value > --config YAML > preset > dataclass default."""

import fnmatch
import tomllib
from pathlib import Path

import pytest
import yaml

from obliviate import ObliviateError
from obliviate.cli import parse
from obliviate.pipeline import DemoConfig, command_preset, resolve

PKG = Path(__import__("obliviate").__file__).parent
ROOT = PKG.parents[1]


def test_every_yaml_of_the_package_is_package_data_and_opens_with_its_command():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["obliviate"]
    files = sorted(PKG.rglob("*.yaml"))
    presets = [f.stem for f in (PKG / "pipeline" / "presets").glob("*.yaml")]
    assert {"demo", "reproduce", "reproduce-lora", "realworld"} <= set(presets)
    assert any(f.parent.name == "accelerate" for f in files) and (PKG / "configs" / "unlearn_idk_ap.yaml").is_file()
    for f in files:
        rel = f.relative_to(PKG).as_posix()
        assert any(fnmatch.fnmatch(rel, p) and rel.count("/") == p.count("/") for p in patterns), rel
        first = next(line for line in f.read_text().splitlines() if line.strip())
        command = "accelerate launch" if f.parent.name == "accelerate" else "obliviate "
        assert first.startswith("#") and command in f.read_text().split("\n\n")[0], rel
    assert not (ROOT / "configs").exists()  # nothing left outside the package


def test_presets_layer_in_order_and_the_user_wins(tmp_path):
    assert command_preset("demo") == {}  # the demo is DemoConfig's defaults
    assert resolve(DemoConfig, ["demo"]) == DemoConfig()
    rep = resolve(DemoConfig, ["reproduce"])
    assert (rep.finetune_lr, rep.base_model, rep.relearn_steps) == (3e-4, "smollm2-135m-instruct", [5, 10])
    assert rep.relearn_batch_size == DemoConfig().relearn_batch_size  # not in the preset: the dataclass default
    assert resolve(DemoConfig, ["reproduce", "reproduce-lora"]).finetune_lr == 3e-3  # a later preset wins
    yml = tmp_path / "c.yaml"
    yml.write_text("finetune_lr: 1.0e-4\nseeds: 5\nmax_new_tokens: 20\n")
    cfg = resolve(DemoConfig, ["reproduce"], yml, ["seeds=2", "max_new_tokens=16"], max_new_tokens=12)
    assert (cfg.finetune_lr, cfg.seeds, cfg.max_new_tokens, cfg.relearn_k) == (1e-4, 2, 12, 4)
    with pytest.raises(ObliviateError, match="command preset 'nope'.*known: .*reproduce"):
        command_preset("nope")


def test_realworld_preset_is_below_the_users_overrides():
    """The realworld unlearning defaults (lr 1e-3, 5 epochs, batch 4) come from its preset, and key=value wins
    (they used to be passed as flags, above the user's overrides)."""
    from obliviate.commands.realworld import unlearn_config

    rw = yaml.safe_load((PKG / "pipeline" / "presets" / "realworld.yaml").read_text())
    assert rw == {"lr": 1e-3, "epochs": 5, "batch_size": 4, "lora": True}
    cfg = unlearn_config(parse(["realworld", "--out", "x"]))
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.recipe, cfg.lora) == (1e-3, 5, 4, "me+gd", True)
    cfg = unlearn_config(parse(["realworld", "--out", "x", "--no-lora", "lr=5e-4", "epochs=2"]))
    assert (cfg.lr, cfg.epochs, cfg.batch_size, cfg.lora) == (5e-4, 2, 4, False)
    assert unlearn_config(parse(["realworld", "--out", "x", "lora=false"])).lora is False  # an override is used


def test_demo_command_line_resolves_through_the_preset(tmp_path):
    from obliviate.commands.demo import resolve_config

    cfg = resolve_config(parse(["demo", "--preset", "tiny", "--seeds", "1", "--out", str(tmp_path), "jobs=1"]))
    assert cfg == DemoConfig(preset="tiny", seeds=1, out=str(tmp_path), jobs=1)
