import json

import pytest
import torch

from obliviate import ObliviateError
from obliviate.classifier import data as data_mod
from obliviate.classifier.data import ImageData, load_digits, random_augment, shift_public, split, strong_augment
from obliviate.classifier.models import (CondGenerator, ProjectionDiscriminator, load_classifier, load_target,
                                         new_classifier, save_classifier)


def test_digits_scaled_and_split_disjoint():
    d = load_digits()
    assert d.x.shape == (1797, 1, 8, 8) and float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    a, b, c = split(d, [0.6, 0.2, 0.2], seed=0)
    assert len(a) + len(b) + len(c) == 1797
    a2, _, _ = split(d, [0.6, 0.2, 0.2], seed=0)
    assert torch.equal(a.x, a2.x)               # deterministic
    with pytest.raises(ObliviateError, match="fractions"):
        split(d, [0.8, 0.5], seed=0)


def test_fashion_mnist_missing_names_apt_command(monkeypatch, tmp_path):
    monkeypatch.setattr(data_mod, "FASHION_DIRS", (str(tmp_path),))
    with pytest.raises(ObliviateError, match="apt-get install -y dataset-fashion-mnist"):
        data_mod.load_fashion_mnist()
    with pytest.raises(ObliviateError, match="unknown dataset"):
        data_mod.load_dataset("cifar")


def test_strong_augment_is_one_draw_per_batch_and_random_augment_per_sample():
    x = load_digits().x[:1].repeat(8, 1, 1, 1)
    s = strong_augment(x)
    assert (s - s[:1]).abs().max() < 0.01        # same transform for every image (only σ=0.001 noise differs)
    r = random_augment(x)
    assert (r - r[:1]).abs().max() > 0.1         # independent per sample
    assert s.min() >= 0 and s.max() <= 1 and r.min() >= 0 and r.max() <= 1


def test_public_shift_kinds():
    x = load_digits().x[:16]
    inv = shift_public(x, kind="inverted", seed=1)
    rb = shift_public(x, kind="rotate-blur", seed=1)
    torch.testing.assert_close(inv, 1 - rb)
    with pytest.raises(ObliviateError, match="public shift"):
        shift_public(x, kind="sideways")


def test_classifier_roundtrip_safetensors_and_pickle_refused(tmp_path):
    m = new_classifier("evalnet", num_classes=10, width=8)
    save_classifier(m, tmp_path / "m", arch="evalnet", meta={"dataset": "digits"})
    m2, spec = load_classifier(tmp_path / "m")
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(m.eval()(x), m2(x))
    assert spec["meta"]["dataset"] == "digits" and spec["kwargs"]["width"] == 8
    pk = tmp_path / "pk"
    pk.mkdir()
    torch.save(m.state_dict(), pk / "model.pt")
    (pk / "model.json").write_text(json.dumps({"arch": "evalnet", "kwargs": {"width": 8}}))
    with pytest.raises(ObliviateError, match="pickle"):
        load_classifier(pk)
    load_classifier(pk, allow_pickle=True)      # explicit opt-in only
    with pytest.raises(ObliviateError, match="architecture"):
        new_classifier("resnet")


def test_load_target_refuses_a_target_that_does_not_fit_the_data(tmp_path):
    digits = load_digits().subset(torch.arange(4))
    save_classifier(new_classifier("cnn", num_classes=10, width=4), tmp_path / "t", arch="cnn",
                    meta={"dataset": "digits"})
    model, spec = load_target(tmp_path / "t", digits, dataset="digits")
    assert model(digits.x).shape == (4, 10) and spec["meta"]["dataset"] == "digits"
    with pytest.raises(ObliviateError, match="trained on 'digits', not 'fashion-mnist'"):
        load_target(tmp_path / "t", digits, dataset="fashion-mnist")
    fashion_like = ImageData(torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), 10)
    with pytest.raises(ObliviateError, match=r"does not accept digits images of shape \(1, 28, 28\)"):
        load_target(tmp_path / "t", fashion_like, dataset="digits")
    save_classifier(new_classifier("cnn", num_classes=5, width=4), tmp_path / "t5", arch="cnn")
    with pytest.raises(ObliviateError, match="target has 5 outputs, dataset has 10 classes"):
        load_target(tmp_path / "t5", digits, dataset="digits")


def test_conditional_generator_and_projection_discriminator_shapes():
    G = CondGenerator(nz=8, num_classes=3, width=8)
    x = G(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    assert x.shape == (4, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    D = ProjectionDiscriminator(num_classes=3, width=8)
    assert D(x, torch.tensor([0, 1, 2, 0])).shape == (4,)
    # the projection term makes D depend on the label
    assert not torch.allclose(D(x, torch.tensor([0, 0, 0, 0])), D(x, torch.tensor([1, 1, 1, 1])))
