"""Each retain regulariser against its formula worked out by hand (sign and masking included)."""

import math

import torch
from torch.testing import assert_close

from obliviate.unlearn.regularizers import REGULARIZERS, ap_loss, gd_loss, kl_loss

t = torch.tensor


def test_gd():
    """Retain mean log-probs (−1, −2): L = mean NLL_mean = 1.5; gradient −1/B (descent raises retain answers)."""
    x = t([-1.0, -2.0], requires_grad=True)
    loss = gd_loss(x)
    assert_close(loss, t(1.5))
    loss.backward()
    assert_close(x.grad, t([-0.5, -0.5]))


def test_kl_direction_and_masking():
    """Position 1: π_ref = (.75, .25), π_θ = (.5, .5): KL(ref‖θ) = .75·log 1.5 + .25·log .5 = 0.130812.
    Position 2: identical → 0. Mask (1, 1): mean 0.065406; mask (1, 0): 0.130812. The reverse direction
    KL(θ‖ref) = .5·log(2/3) + .5·log 2 = 0.143841 differs, so the direction is checked too."""
    ref = t([[[math.log(3.0), 0.0], [1.0, 2.0]]])
    pol = t([[[0.0, 0.0], [1.0, 2.0]]], requires_grad=True)
    assert_close(kl_loss(pol, ref, t([[1.0, 1.0]])), t(0.065406), atol=1e-6, rtol=0)
    loss = kl_loss(pol, ref, t([[1.0, 0.0]]))
    assert_close(loss, t(0.130812), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(pol.grad[0, 0], t([-0.25, 0.25]))  # p_θ − p_ref: pulls toward the reference
    assert_close(pol.grad[0, 1], t([0.0, 0.0]))


def test_ap():
    """Δ = 0 → (1/β)·log 2 = 6.931472; Δ = 10, β = 0.1 → 10·log(1 + e^−1) = 3.132617. Mean = 5.032044.
    dL/dlogπ(y) = −σ(−βΔ)/B: −0.25 at Δ = 0 (B = 2); the refusal gets the opposite sign."""
    y, idk = t([-2.0, -1.0], requires_grad=True), t([-2.0, -11.0], requires_grad=True)
    loss = ap_loss(y, idk, beta=0.1)
    assert_close(loss, t(5.032044), atol=1e-5, rtol=0)
    loss.backward()
    assert_close(y.grad[0], t(-0.25))
    assert_close(idk.grad, -y.grad)
    assert_close(y.grad[1], t(-0.5 / (1 + math.e)))


def test_every_regularizer_has_its_equation_documented():
    for name, part in REGULARIZERS.items():
        assert ".. math::" in part.loss.__doc__ and "Args" in part.loss.__doc__, name
