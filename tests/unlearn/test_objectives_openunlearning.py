"""WGA, SatImp, UNDIAL and CE-U (open-unlearning's methods) against their formulas worked out by hand, including the
masking of prompt / padding positions, CE-U's "first n answer tokens" rule, the detached weights' gradients and the
limit identities; and the primal–dual retain weight's update rule."""

import copy
import math

import pytest
import torch
from torch.testing import assert_close

from obliviate.unlearn import UnlearnConfig
from obliviate.unlearn.objectives import OBJECTIVES, ceu_loss, ga_loss, satimp_loss, undial_loss, wga_loss
from obliviate.unlearn.regularizers import dual_ascent

t = torch.tensor
L = math.log


def _token_batch():
    """Two sequences, 4 next-token positions each. Answer tokens (mask 1): p = 0.5, 0.25 in the first, 0.8 in the
    second; prompt / padding positions hold junk log-probs (−7) that must not count. N = 3 answer tokens."""
    logps = t([[-7.0, L(0.5), L(0.25), -7.0], [-7.0, -7.0, L(0.8), -7.0]], requires_grad=True)
    return logps, t([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]])


def test_wga():
    """β = 1: L = (1/N)Σ p_t·log p_t = (0.5·log 0.5 + 0.25·log 0.25 + 0.8·log 0.8)/3
    = (−0.346574 − 0.346574 − 0.178515)/3 = −0.290554. The weight p_t is detached, so dL/dlog p_t = p_t/N
    = (0.166667, 0.083333; 0.266667), not p_t(1 + log p_t)/N, and 0 at the masked positions."""
    logps, mask = _token_batch()
    loss = wga_loss(logps, mask, beta=1.0)
    assert_close(loss, t((0.5 * L(0.5) + 0.25 * L(0.25) + 0.8 * L(0.8)) / 3))
    assert_close(loss, t(-0.290554), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(logps.grad, t([[0.0, 0.5 / 3, 0.25 / 3, 0.0], [0.0, 0.0, 0.8 / 3, 0.0]]))


def test_wga_beta_two_reweights_by_p_squared():
    """β = 2: weights p² = (0.25, 0.0625, 0.64): L = (0.25·log 0.5 + 0.0625·log 0.25 + 0.64·log 0.8)/3 = (−0.173287 − 0.086643 − 0.142812)/3 = −0.134247."""
    logps, mask = _token_batch()
    assert_close(wga_loss(logps, mask, beta=2.0), t(-0.134247), atol=1e-6, rtol=0)


def test_satimp():
    """β₁ = 5, β₂ = 1: weights p⁵(1 − p) = (0.015625, 0.000732, 0.065536);
    L = (0.015625·log 0.5 + 0.000732·log 0.25 + 0.065536·log 0.8)/3 = −0.008823; gradient = the weights / N."""
    logps, mask = _token_batch()
    loss = satimp_loss(logps, mask, beta1=5.0, beta2=1.0)
    w = [0.5 ** 5 * 0.5, 0.25 ** 5 * 0.75, 0.8 ** 5 * 0.2]
    assert_close(loss, t((w[0] * L(0.5) + w[1] * L(0.25) + w[2] * L(0.8)) / 3))
    assert_close(loss, t(-0.008823), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(logps.grad, t([[0.0, w[0] / 3, w[1] / 3, 0.0], [0.0, 0.0, w[2] / 3, 0.0]]))


def test_wga_and_satimp_at_zero_beta_are_gradient_ascent():
    """β = 0 (and β₁ = β₂ = 0): every weight is 1, L = (1/N)Σ log p_t. With equal answer lengths this is `ga`
    (mean over sequences of the per-sequence mean) in value and gradient; with unequal lengths it is the token mean."""
    logps = t([[L(0.5), L(0.25), 0.0], [L(0.8), L(0.1), 0.0]], requires_grad=True)
    mask = t([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    ga_in = logps.detach().clone().requires_grad_(True)
    ga = ga_loss((ga_in * mask).sum(-1) / mask.sum(-1))
    ga.backward()
    for fn, kw in ((wga_loss, dict(beta=0.0)), (satimp_loss, dict(beta1=0.0, beta2=0.0))):
        x = logps.detach().clone().requires_grad_(True)
        loss = fn(x, mask, **kw)
        loss.backward()
        assert_close(loss, ga)
        assert_close(x.grad, ga_in.grad)
    uneven, uneven_mask = _token_batch()
    assert_close(wga_loss(uneven, uneven_mask, beta=0.0), t((L(0.5) + L(0.25) + L(0.8)) / 3))


def _undial_batch():
    """V = 3, one sequence of 3 positions; position 0 is the prompt (masked, with extreme logits).
    pos 1: reference z = (2, 0, 0), y = 0, student z = (0, 0, 0);  pos 2: reference (0, 1, 0), y = 1, student (1, 0, 0)."""
    student = t([[[50.0, -50.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], requires_grad=True)
    ref = t([[[-50.0, 50.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    return student, ref, t([[-100, 0, 1]]), t([[0.0, 1.0, 1.0]])


def test_undial():
    """β = 10. pos 1: adjusted reference (−8, 0, 0) → q = (a, (1−a)/2, (1−a)/2), a = e⁻⁸/(e⁻⁸ + 2) = 0.000168;
    the student is uniform, so CE = log 3 = 1.098612 whatever q. pos 2: adjusted (0, −9, 0) → q = (b, c, b),
    c = e⁻⁹/(2 + e⁻⁹) = 0.0000617, b = (1 − c)/2; student log-softmax = (1 − s, −s, −s), s = log(e + 2) = 1.551445,
    CE = s − b = 1.051476. L = (1.098612 + 1.051476)/2 = 1.075044. Gradient in the student logits = (softmax − q)/N;
    0 at the masked prompt position."""
    student, ref, y, mask = _undial_batch()
    loss = undial_loss(student, ref, y, mask, beta=10.0)
    a = math.exp(-8) / (math.exp(-8) + 2)
    c = math.exp(-9) / (2 + math.exp(-9))
    s = L(math.e + 2)
    assert_close(loss, t((L(3) + s - (1 - c) / 2) / 2))
    assert_close(loss, t(1.075044), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(student.grad[0, 1], (t([1 / 3, 1 / 3, 1 / 3]) - t([a, (1 - a) / 2, (1 - a) / 2])) / 2)
    assert_close(student.grad[0, 0], t([0.0, 0.0, 0.0]))


def test_undial_student_equal_to_reference_at_beta_zero_has_zero_gradient():
    """β = 0 and z_θ = z_ref: the target is the student's own distribution, softmax − q = 0 everywhere."""
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    student = logits.clone().requires_grad_(True)
    mask = t([[0.0, 1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]])
    undial_loss(student, logits, torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(1)), mask,
                beta=0.0).backward()
    assert_close(student.grad, torch.zeros_like(student), atol=1e-7, rtol=0)


def test_undial_through_the_model_is_stationary_at_the_reference(random_micro, splits):
    """The registry adapter end to end: a policy equal to its frozen copy, β = 0 → every parameter gradient is 0,
    while β = 10 gives a non-zero gradient."""
    from obliviate.unlearn.batch import BatchIndices, build_data, collate
    from obliviate.unlearn.forward import Ref, Views

    model, tok = random_micro
    policy = copy.deepcopy(model)
    batch = collate(build_data(tok, splits[0], None, set()), BatchIndices([0, 1, 2]))
    ref = Ref(copy.deepcopy(model).eval())
    policy.eval()  # no dropout: the two forwards must match exactly
    for beta, zero in ((0.0, True), (10.0, False)):
        policy.zero_grad()
        OBJECTIVES["undial"](Views(policy, batch, ref=ref), UnlearnConfig(recipe="undial", undial_beta=beta)).backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in policy.parameters() if p.grad is not None))
        assert (norm < 1e-5) if zero else (norm > 1e-3), (beta, norm)


def _ceu_batch():
    """V = 3, two sequences of 4 positions. Sequence 0: answer at positions 1, 2, 3; sequence 1: one answer token at
    position 2 (its first, so dropped for n = 1); positions 0 are prompts, the rest padding (junk logits)."""
    logits = t([[[9.0, 0.0, 0.0], [0.0, L(3), 0.0], [L(2), 0.0, 0.0], [0.0, 0.0, 0.0]],
                [[0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]], requires_grad=True)
    return logits, t([[-100, 1, 0, 2], [-100, -100, 0, -100]]), t([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0]])


def test_ceu_skips_the_first_answer_token():
    """n = 1 keeps (0, 2) and (0, 3): N = 2. (0, 2): p = (0.5, 0.25, 0.25), y = 0 → target (0, 0.5, 0.5),
    CE = log 4 = 1.386294; (0, 3): uniform p, y = 2 → target (0.5, 0.5, 0), CE = log 3 = 1.098612.
    L = 1.242453. Gradient at (0, 2) = (p − target)/N = (0.25, −0.125, −0.125): the true token is pushed down
    (+p_y/N), the others up (−p_v·p_y/(1 − p_y)/N); the first answer token, prompt and padding get none."""
    logits, y, mask = _ceu_batch()
    loss = ceu_loss(logits, y, mask, ignore_first_n=1)
    assert_close(loss, t((L(4) + L(3)) / 2))
    assert_close(loss, t(1.242453), atol=1e-6, rtol=0)
    loss.backward()
    assert_close(logits.grad[0, 2], t([0.25, -0.125, -0.125]))
    assert_close(logits.grad[0, 1], t([0.0, 0.0, 0.0]))
    assert_close(logits.grad[1], torch.zeros(4, 3))


def test_ceu_with_n_zero_counts_every_answer_token():
    """n = 0 adds (0, 1): p = (0.2, 0.6, 0.2), y = 1 → target (0.5, 0, 0.5), CE = log 5; and (1, 2): uniform, CE = log 3.
    L = (log 4 + log 3 + log 5 + log 3)/4 = 1.298239."""
    logits, y, mask = _ceu_batch()
    assert_close(ceu_loss(logits, y, mask, ignore_first_n=0), t((L(4) + 2 * L(3) + L(5)) / 4))
    assert_close(ceu_loss(logits, y, mask, ignore_first_n=0), t(1.298239), atol=1e-6, rtol=0)


def test_ceu_with_no_token_left_is_zero_not_nan():
    logits, y, mask = _ceu_batch()
    loss = ceu_loss(logits, y, mask, ignore_first_n=5)
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("key", ["wga", "satimp", "undial", "ceu"])
def test_registered_and_overridable(key):
    from obliviate.config import load_config

    assert key in OBJECTIVES
    cfg = load_config(UnlearnConfig, None, [f"recipe={key}+gd", "wga_beta=2", "satimp_beta1=3", "undial_beta=4",
                                            "ceu_ignore_first_n=2"])
    assert (cfg.objective, cfg.wga_beta, cfg.satimp_beta1, cfg.undial_beta, cfg.ceu_ignore_first_n) == (key, 2, 3, 4, 2)


def test_open_unlearning_defaults():
    """SatImp's forget weight 0.1 unless given; UNDIAL's lr 1e-4 × 10 epochs on real models (no size preset)."""
    assert UnlearnConfig(recipe="satimp+gd").alpha == 0.1
    assert UnlearnConfig(recipe="satimp+gd", alpha=1.0).alpha == 1.0
    assert UnlearnConfig(recipe="wga+gd").alpha == 1.0
    p = UnlearnConfig(recipe="undial").hyperparams(None)
    assert (p.lr, p.epochs) == (1e-4, 10)
    assert UnlearnConfig(recipe="undial").hyperparams("tiny").lr == 5e-4
    assert UnlearnConfig(recipe="wga").hyperparams(None).lr == 1e-5
    c = UnlearnConfig()
    assert (c.wga_beta, c.satimp_beta1, c.satimp_beta2, c.undial_beta, c.ceu_ignore_first_n) == (1.0, 5.0, 1.0, 10.0, 1)


def test_dual_ascent_step_by_step():
    """ε = 1, η = 0.5, λ₀ = 1; retain losses 3, 2, 0.5, 0.1, −∞-ish: λ = 1 + 0.5·2 = 2 → 2 + 0.5·1 = 2.5
    → 2.5 − 0.25 = 2.25 → 2.25 − 0.45 = 1.8 → max(0, 1.8 + 0.5·(0 − 1)·10) = 0 (never negative)."""
    lam, seen = 1.0, []
    for retain in (3.0, 2.0, 0.5, 0.1):
        lam = dual_ascent(lam, retain, constraint=1.0, step=0.5)
        seen.append(lam)
    assert seen == pytest.approx([2.0, 2.5, 2.25, 1.8])
    assert dual_ascent(1.8, -9.0, constraint=1.0, step=0.5) == 0.0
    assert dual_ascent(0.0, 0.2, constraint=1.0, step=0.5) == 0.0


def test_dual_settings_are_checked():
    from obliviate import ObliviateError

    with pytest.raises(ObliviateError, match="needs a retain regularizer"):
        UnlearnConfig(recipe="ga", retain_constraint=0.5)
    with pytest.raises(ObliviateError, match="retain_constraint is not"):
        UnlearnConfig(recipe="ga+gd", dual_step=2.0)
    with pytest.raises(ObliviateError, match="dual_step must be a finite number in"):
        UnlearnConfig(recipe="ga+gd", retain_constraint=0.5, dual_step=0.0)
    with pytest.raises(ObliviateError, match="lam"):
        UnlearnConfig(recipe="ga+gd", retain_constraint=0.5, lam=-1.0)
