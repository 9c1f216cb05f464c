import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from obliviate.classifier.data import load_digits
from obliviate.classifier.steal import (StealConfig, diversity_loss, generator_loss, high_entropy_examples,
                                                 prediction_entropy, run_dfhl_rs, smooth_labels, uncertain_examples)
from obliviate.classifier.models import new_classifier
from obliviate.classifier.oracle import HardLabelOracle
from obliviate.classifier.robustness import cw_loss, train_classifier


def test_smooth_labels_hand_values():
    """K = 4, ε_ls = 0.2: the true class gets 0.8, each other class 0.2/3."""
    out = smooth_labels(torch.tensor([1, 3]), 4, eps=0.2)
    o = 0.2 / 3
    assert_close(out, torch.tensor([[o, 0.8, o, o], [o, o, o, 0.8]]))
    assert_close(out.sum(1), torch.ones(2))


def test_diversity_term_hand_values():
    """p̄ = (0.5, 0.5): λ Σ p̄ log10 p̄ = 3 · 2 · 0.5 · log10(0.5) = −0.90309; a collapsed batch gives 0."""
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert_close(diversity_loss(probs, lam=3.0), torch.tensor(3 * math.log10(0.5)))
    assert_close(diversity_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), lam=3.0), torch.tensor(0.0))
    # p̄ = (0.25, 0.75): 0.25 log10 0.25 + 0.75 log10 0.75 = −0.244219
    assert_close(diversity_loss(torch.tensor([[0.5, 0.5], [0.0, 1.0]]), lam=1.0), torch.tensor(-0.2442190))


def test_generator_loss_is_kl_plus_diversity():
    """One sample, logits (0, 0) → p = (0.5, 0.5); ỹ = (0.8, 0.2):
    KL = 0.8 ln(0.8/0.5) + 0.2 ln(0.2/0.5) = 0.192745; diversity = λ · log10(0.5) = −0.301030 · λ."""
    y_s = torch.tensor([[0.8, 0.2]])
    loss = generator_loss(torch.zeros(1, 2), y_s, lam=2.0)
    assert_close(loss, torch.tensor(0.8 * math.log(1.6) + 0.2 * math.log(0.4) + 2 * math.log10(0.5)))


def test_cw_margin_loss_hand_value():
    """logits (1, 3, 2): y = 0 → 3 − 1 = 2; y = 1 → 2 − 3 = −1; mean 0.5."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    assert_close(cw_loss(logits, torch.tensor([0, 1])), torch.tensor(0.5))


def _trained_clone():
    d = load_digits()
    model = new_classifier("cnn", num_classes=10, width=8)
    train_classifier(model, d.subset(torch.arange(1200)), epochs=4, lr=0.1, batch_size=32)
    return model, d.x[1200:1264]


def test_hee_raises_clone_entropy_without_projection_and_in_eval_mode():
    clone, x = _trained_clone()
    clone.train()                                   # HEE must switch to eval (BN running stats untouched)
    bn = next(m for m in clone.modules() if isinstance(m, nn.BatchNorm2d))
    stats = bn.running_mean.clone()
    with torch.no_grad():
        h0 = prediction_entropy(clone.eval()(x)).mean()
    clone.train()
    x_hee = high_entropy_examples(clone, x, eta=0.03, steps=10)
    assert clone.training                          # mode restored
    assert torch.equal(bn.running_mean, stats)     # ran in eval mode
    with torch.no_grad():
        h1 = prediction_entropy(clone.eval()(x_hee)).mean()
    assert h0 < 1.0 and h1 > h0 + 0.5, (h0, h1)
    assert x_hee.min() >= 0 and x_hee.max() <= 1
    assert (x_hee - x).abs().max() > 0.12          # moves beyond any ε-ball a projection would impose (η·S = 0.3)


def test_prediction_entropy_and_ue_stay_in_ball():
    assert_close(prediction_entropy(torch.zeros(1, 4)), torch.tensor([math.log(4)]))
    clone, x = _trained_clone()
    x_ue = uncertain_examples(clone, x, eps=0.05, steps=5)
    assert (x_ue - x).abs().max() <= 0.05 + 1e-6


def test_dfhl_loop_counts_queries_and_grows_memory_bank():
    target = new_classifier("cnn", num_classes=10, width=4).eval()
    cfg = StealConfig(epochs=3, n_c=2, n_g=2, batch_size=8, gen_batch=5, val_every=1, val_n=20)
    oracle = HardLabelOracle(target)
    res = run_dfhl_rs(cfg, oracle, shape=(1, 8, 8), num_classes=10, val=load_digits().subset(torch.arange(20)))
    assert oracle.queries == 3 * 2 * 8 and res["history"]["queries"] == [16, 32, 48]
    assert res["bank"].shape == (15, 1, 8, 8)       # one lowest-loss batch kept per epoch
    budget = HardLabelOracle(target, budget=20)
    run_dfhl_rs(cfg, budget, shape=(1, 8, 8), num_classes=10)
    assert budget.queries == 16                     # stops before a batch would exceed the budget


def test_generator_optimizer_recreated_and_best_batch_kept(monkeypatch):
    """generate_batch returns the batch whose loss was lowest *before* each update."""
    import obliviate.classifier.steal as mod

    seen = []
    real = mod.generator_loss

    def spy(logits, y_s, *, lam):
        loss = real(logits, y_s, lam=lam)
        seen.append(loss.item())
        return loss

    monkeypatch.setattr(mod, "generator_loss", spy)
    made = []
    real_adam = torch.optim.Adam
    monkeypatch.setattr(mod.torch.optim, "Adam", lambda *a, **k: made.append(1) or real_adam(*a, **k))
    from obliviate.classifier.models import Generator

    g, clone = Generator(nz=8, width=8), new_classifier("cnn", width=4)
    cfg = StealConfig(n_g=6, gen_batch=4, nz=8)
    _, best = mod.generate_batch(g, clone, num_classes=10, cfg=cfg, pad=1)
    mod.generate_batch(g, clone, num_classes=10, cfg=cfg, pad=1)
    assert best == min(seen[:6]) and len(made) == 2


def test_dfhl_loop_is_deterministic_for_a_seed():
    target = new_classifier("cnn", num_classes=10, width=4).eval()
    cfg = StealConfig(epochs=2, n_c=2, n_g=2, batch_size=8, gen_batch=4)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        res = run_dfhl_rs(cfg, HardLabelOracle(target), shape=(1, 8, 8), num_classes=10)
        runs.append((res["bank"], [p.detach().clone() for p in res["clone"].parameters()]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
