import numpy as np
import torch
import torch.nn as nn
from torch.testing import assert_close

from obliviate.classifier.models import CondGenerator, ProjectionDiscriminator, new_classifier
from obliviate.classifier.invert import (ce_inversion_loss, frechet_distance, gan_step, hinge_d_loss,
                                                hinge_g_loss, knn_distance, max_margin_loss, top_n_select)


def test_max_margin_loss_hand_values():
    """logits (1, 3, 2): c = 0 → −1 + 3 = 2; c = 1 → −3 + 2 = −1; c = 2 → −2 + 3 = 1."""
    logits = torch.tensor([[1.0, 3.0, 2.0]]).repeat(3, 1)
    assert_close(max_margin_loss(logits, torch.tensor([0, 1, 2])), torch.tensor([2.0, -1.0, 1.0]))
    assert_close(ce_inversion_loss(torch.zeros(1, 4), torch.tensor([2])), torch.tensor([np.log(4.0)], dtype=torch.float32))


def test_top_n_equals_bruteforce_per_class_sort():
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(50, 6, generator=g) * 3, 1)
    idx, labels = top_n_select(probs, 7)
    assert idx.shape == labels.shape == (42,)
    for k in range(6):
        brute = sorted(range(50), key=lambda i: -float(probs[i, k]))[:7]
        assert set(idx[labels == k].tolist()) == set(brute)
    # non-exclusive: image 0 is the most confident for both classes, so it is kept for both
    i2, l2 = top_n_select(torch.tensor([[0.6, 0.4], [0.3, 0.3], [0.1, 0.3]]), 1)
    assert i2.tolist() == [0, 0] and l2.tolist() == [0, 1]


def test_hinge_losses_hand_values():
    """D(real) = (2, 0.5) → max(0, 1−·) = (0, 0.5), mean 0.25; D(fake) = (−2, 0) → (0, 1), mean 0.5."""
    assert_close(hinge_d_loss(torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])), torch.tensor(0.75))
    assert_close(hinge_g_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]), alpha=0.2), torch.tensor(-2.0 + 0.6))


def test_knn_and_frechet_hand_values():
    """KNN: rec (0,0) class 0 → nearest class-0 private (3,4): 25 (the closer class-1 point is ignored);
    rec (1,1) class 1 → (1,2): 1; mean 13.
    FD in 1-D: a = {0, 2} (μ 1, var 2), b = {1, 5} (μ 3, var 8): (1−3)² + 2 + 8 − 2·√16 = 6."""
    rec, rec_y = torch.tensor([[0.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 1])
    priv, priv_y = torch.tensor([[3.0, 4.0], [0.1, 0.0], [1.0, 2.0]]), torch.tensor([0, 1, 1])
    assert abs(knn_distance(rec, rec_y, priv, priv_y) - 13.0) < 1e-5
    assert abs(frechet_distance(np.array([[0.0], [2.0]]), np.array([[1.0], [5.0]])) - 6.0) < 1e-6
    x = np.random.default_rng(0).normal(size=(200, 3))
    assert abs(frechet_distance(x, x)) < 1e-6


class Recorder(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x, *y):
        self.seen.append(x.detach().clone())
        return self.inner(x, *y)


def test_discriminator_never_sees_augmented_fakes():
    """`augment` shifts images by +10 (a marker no real/fake image in [0, 1+1/256] can have): T must see the
    marked fakes in the inversion term, D must never see them."""
    G = CondGenerator(nz=8, num_classes=3, width=8)
    D = Recorder(ProjectionDiscriminator(num_classes=3, width=8))
    T = Recorder(new_classifier("cnn", num_classes=3, width=4).eval())
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    real = lambda: (torch.rand(6, 1, 8, 8), torch.randint(0, 3, (6,)))  # noqa: E731
    calls = []
    augment = lambda x: (calls.append(1), x + 10.0)[1]  # noqa: E731
    for _ in range(2):
        gan_step(G, D, T, sample_real=real, num_classes=3, nz=8, batch_size=6, n_dis=5, alpha=0.2,
                 inv_loss=max_margin_loss, augment=augment, opt_g=opt_g, opt_d=opt_d)
    assert len(D.seen) == 2 * (5 * 2 + 1)           # n_dis · (real + fake) + one generator pass
    assert all(float(x.max()) <= 1 + 1 / 256 + 1e-6 for x in D.seen)
    assert len(calls) == 2 and all(float(x.min()) >= 10 for x in T.seen)


def test_cgan_training_and_z_only_reconstruction_are_deterministic():
    from obliviate.classifier.invert import InvertConfig, reconstruct, train_gan

    cfg = InvertConfig(gan_iters=2, n_dis=1, batch_size=8, rec_steps=3, nz=8, gen_width=8, dis_width=8)
    T = new_classifier("cnn", num_classes=3, width=4).eval()
    x, y = torch.rand(12, 1, 8, 8), torch.randint(0, 3, (12,))
    outs = []
    for _ in range(2):
        torch.manual_seed(1)
        G, _, _ = train_gan(x, y, T, cfg=cfg, num_classes=3, alpha=0.2, inv="mm", conditional=True, desc="t")
        before = [p.detach().clone() for p in G.parameters()]
        outs.append(reconstruct(G, T, torch.tensor([0, 1, 2]), cfg=cfg))
        assert all(torch.equal(a, b) for a, b in zip(before, G.parameters()))   # only z moves
    assert torch.equal(outs[0], outs[1])
