"""Each forget objective against its formula worked out by hand on a fixed batch (sign and masking included)."""

import math

import pytest
import torch
from torch.testing import assert_close

from obliviate.unlearn.objectives import (OBJECTIVES, dpo_loss, ga_loss, idk_loss, me_loss, npo_loss, rmu_control,
                                          rmu_loss, simnpo_loss)

t = torch.tensor


def test_ga():
    """NLL_mean = 1 and 3, so L = −mean NLL = −2; d L/d logp_i = 1/B = 0.5 > 0 (descent lowers log-probs)."""
    x = t([-1.0, -3.0], requires_grad=True)
    loss = ga_loss(x)
    assert_close(loss, t(-2.0))
    loss.backward()
    assert_close(x.grad, t([0.5, 0.5]))


def test_npo_sequence():
    """logπ = (−10, −20), logπ_ref = (−12, −20), β = 0.1: β(NLL_θ − NLL_ref) = β(ref − θ) = (−0.2, 0).
    −logσ(−0.2) = log(1 + e^0.2) = 0.798139, −logσ(0) = log 2 = 0.693147; L = (2/β)·mean = 20·0.745643 = 14.91286.
    Equivalently (2/β)·log(1 + (π/π_ref)^β) with π/π_ref = e² → (e²)^0.1 = e^0.2. Gradient in logπ is positive."""
    x = t([-10.0, -20.0], requires_grad=True)
    loss = npo_loss(x, t([-12.0, -20.0]), beta=0.1)
    assert_close(loss, t(14.91286), atol=1e-4, rtol=0)
    assert_close(loss, t(20 * (math.log1p(math.exp(0.2)) + math.log(2)) / 2))
    loss.backward()
    assert (x.grad > 0).all()


def test_npo_token_mean():
    """Sums (−10, −20) over 4 + 6 tokens: token-mean logπ = −3; ref sums (−12, −20): −3.2. One log σ for the batch:
    β(ref − θ) = 0.1·(−0.2) = −0.02 → L = (2/β)·log(1 + e^0.02) = 20·0.703197 = 14.06394."""
    loss = npo_loss(t([-10.0, -20.0]), t([-12.0, -20.0]), beta=0.1, forget_lengths=t([4.0, 6.0]),
                    granularity="token_mean")
    assert_close(loss, t(20 * math.log1p(math.exp(0.02))))
    assert_close(loss, t(14.06394), atol=1e-4, rtol=0)


def test_npo_gradient_tends_to_ga_as_beta_vanishes():
    """dL/dlogπ_i = (2/B)·σ(β(logπ_i − logπ_ref,i)) → 1/B as β → 0: NPO's gradient becomes GA's (on sums)."""
    x = t([-10.0, -20.0, -5.0], requires_grad=True)
    npo_loss(x, t([-12.0, -15.0, -9.0]), beta=1e-6).backward()
    y = x.detach().clone().requires_grad_(True)
    ga_loss(y).backward()
    assert_close(x.grad, y.grad, atol=1e-5, rtol=0)


@pytest.mark.parametrize("gamma,args", [(0.0, (2.5, 5.0)), (0.125, (2.375, 4.875))])
def test_simnpo(gamma, args):
    """Mean log-probs (−1, −2), β = 2.5: −β·m − γ = (2.5, 5.0) for γ = 0 → −logσ = (0.078889, 0.0067153),
    L = (2/β)·mean = 0.8·0.042802 = 0.034242. With γ = 0.125 the arguments drop by 0.125."""
    loss = simnpo_loss(t([-1.0, -2.0]), beta=2.5, gamma=gamma)
    expected = 0.8 * sum(math.log1p(math.exp(-a)) for a in args) / 2
    assert_close(loss, t(expected))
    if gamma == 0.0:
        assert_close(loss, t(0.034242), atol=1e-5, rtol=0)


def _me_batch():
    # V = 2; positions: uniform (0, 0), P = (.75, .25) from logits (log 3, 0), and a peaked one that is masked.
    logits = t([[[0.0, 0.0], [math.log(3.0), 0.0], [10.0, -10.0]]], requires_grad=True)
    return logits, t([[1.0, 1.0, 0.0]])


def test_me_code_form():
    """KL(U‖P) = −log V − (1/V)Σ log P: 0 at uniform; at P = (.75, .25): −0.693147 + ½(0.287682 + 1.386294) = 0.143841.
    Mean over the 2 unmasked positions = 0.0719205. Gradient in the logits = (p − 1/V)/2 = (0.125, −0.125) there."""
    logits, mask = _me_batch()
    loss = me_loss(logits, mask, form="code")
    assert_close(loss, t(0.0719205), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(logits.grad[0, 1], t([0.125, -0.125]))
    assert_close(logits.grad[0, 2], t([0.0, 0.0]))  # masked position: no gradient


def test_me_paper_form_and_masking():
    """KL(P‖U) = Σ p log p + log V: at (.75, .25): −0.215762 − 0.346574 + 0.693147 = 0.130812; mean = 0.065406.
    Unmasking the peaked third position adds its KL (≈ log 2) to the mean: the mask matters."""
    logits, mask = _me_batch()
    assert_close(me_loss(logits, mask, form="paper"), t(0.065406), atol=1e-6, rtol=0)
    full = me_loss(logits, torch.ones_like(mask), form="paper")
    p = torch.softmax(t([10.0, -10.0]), -1)
    assert_close(full, (t(0.130812) + (p * p.log()).sum() + math.log(2)) / 3, atol=1e-5, rtol=0)


def test_idk():
    """Refusal mean log-probs (−0.5, −1.5): L = mean NLL_mean = 1.0; gradient −1/B (descent raises the refusal)."""
    x = t([-0.5, -1.5], requires_grad=True)
    loss = idk_loss(x)
    assert_close(loss, t(1.0))
    loss.backward()
    assert_close(x.grad, t([-0.5, -0.5]))


def test_dpo():
    """Item 1: margin (−5+6) − (−3+4) = 0 → (2/β)·log 2 = 13.862944. Item 2: (−4+6) − (−6+4) = 4, β·4 = 0.4 →
    20·log(1 + e^−0.4) = 10.260304. Mean = 12.061624. Raising the refusal lowers the loss, raising the answer raises it."""
    chosen, rejected = t([-5.0, -4.0], requires_grad=True), t([-3.0, -6.0], requires_grad=True)
    loss = dpo_loss(chosen, rejected, t([-6.0, -6.0]), t([-4.0, -4.0]), beta=0.1)
    assert_close(loss, t(12.061624), atol=1e-4, rtol=0)
    loss.backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_rmu():
    """H = 2, control c·u = (0, 2). Forget token 1 (1, 0): ((1−0)² + (0−2)²)/2 = 2.5; token 2 masked.
    Retain (1, 1) vs ref (0, 1): (1 + 0)/2 = 0.5, × α_r = 2 → 1.0. L = 3.5."""
    loss = rmu_loss(t([[[1.0, 0.0], [3.0, 4.0]]]), t([[1, 0]]), t([0.0, 2.0]), t([[[1.0, 1.0]]]), t([[[0.0, 1.0]]]),
                    t([[1]]), retain_weight=2.0)
    assert_close(loss, t(3.5))


def test_rmu_control_is_a_fixed_scaled_unit_vector():
    u = rmu_control(16, seed=3, coeff=6.5)
    assert_close(u.norm(), t(6.5))
    assert_close(u, rmu_control(16, seed=3, coeff=6.5))
    assert not torch.equal(u, rmu_control(16, seed=4, coeff=6.5))


def test_every_objective_has_its_equation_documented():
    for name, part in OBJECTIVES.items():
        assert ".. math::" in part.loss.__doc__ and "Args" in part.loss.__doc__, name
