"""Issue 28, defect 5 (last item): a non-finite weight after an optimiser step is a one-line error in every
training verb, and nothing is saved. `finetune grad_clip=nan` used to save NaN weights with exit 0."""

import math

import pytest
import torch

from obliviate import ObliviateError
from obliviate import stats


def test_check_finite_weights_names_the_offender():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    stats.check_finite_weights([("a", a), ("b", b)], what="x")  # finite: nothing
    with torch.no_grad():
        b[1] = math.nan
    with pytest.raises(ObliviateError, match=r"^x: weight b is not finite"):
        stats.check_finite_weights([("a", a), ("b", b)], what="x")
    with torch.no_grad():
        b[1], a[0] = 1.0, -math.inf
    with pytest.raises(ObliviateError, match="weight 0 is not finite"):
        stats.check_finite_weights([a, b], what="x")
    stats.check_finite_weights([torch.full((4,), 1e20)], what="x")  # huge but finite: its norm overflows, still fine


class _Poison(torch.optim.AdamW):
    """AdamW whose second step writes a NaN into the first parameter (what lr=inf or a bad grad_clip did)."""

    def step(self, closure=None):
        out = super().step(closure)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = math.nan
        return out


def _poisoned(params, *, lr, weight_decay):
    return _Poison([p for p in params if p.requires_grad], lr=lr, weight_decay=weight_decay)


def test_finetune_grad_clip_nan_exits_nonzero_and_saves_nothing(world_dir, base_dir, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "ft"
    code = main(["finetune", "--model", str(base_dir), "--data", str(world_dir), "--split", "forget01",
                 "--out", str(out), "grad_clip=nan", "max_steps=2", "batch_size=2"])
    assert code != 0
    assert not (out / "model.safetensors").exists()
    err = capsys.readouterr().err
    assert "grad_clip" in err and len(err.strip().splitlines()) == 1


def test_finetune_stops_on_a_non_finite_weight_and_saves_nothing(world_dir, base_dir, tmp_path, monkeypatch, capsys):
    import obliviate.models.finetune as ft
    from obliviate.cli import main

    monkeypatch.setattr(ft, "adamw", _poisoned)
    out = tmp_path / "ft"
    code = main(["finetune", "--model", str(base_dir), "--data", str(world_dir), "--split", "forget01",
                 "--out", str(out), "max_steps=4", "batch_size=2"])
    assert code != 0 and not (out / "model.safetensors").exists()
    assert "finetune step 2: weight" in capsys.readouterr().err


def test_unlearn_stops_on_a_non_finite_weight(unlearn_target_dir, world_dir, monkeypatch):
    import obliviate.unlearn.setup as setup
    from obliviate.data.loading import load_split
    from obliviate.models.loading import load_model
    from obliviate.unlearn import UnlearnConfig, unlearn

    monkeypatch.setattr(setup, "adamw", _poisoned)  # the optimiser of the run's setup
    model, tok = load_model(unlearn_target_dir)
    with pytest.raises(ObliviateError, match="unlearn step 2: weight .* is not finite"):
        unlearn(model, tok, load_split(world_dir, "forget01"), None, UnlearnConfig(recipe="ga", max_steps=3,
                                                                                  batch_size=2), progress=False)


def test_classifier_training_stops_on_a_non_finite_weight():
    from obliviate.classifier.data import ImageData
    from obliviate.classifier.robustness import train_classifier

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    data = ImageData(torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)), 2)
    with pytest.raises(ObliviateError, match="classifier training.*weight .* is not finite"):
        train_classifier(model, data, epochs=1, lr=math.inf, batch_size=4)
