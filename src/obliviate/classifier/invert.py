"""PLG-MI: pseudo-label-guided model inversion with a conditional GAN (Yuan et al., AAAI 2023, arXiv:2302.09814).

White-box target T over private classes; the attacker holds unlabelled, distribution-shifted public
images. (1) Top-n selection pseudo-labels public images per class with T. (2) A conditional GAN
(conditional-BN generator, spectral-norm projection discriminator, hinge loss) learns on them while
the generator also minimises a max-margin inversion loss on T of *augmented* fakes. (3) Per class,
only z is optimised against T under two independent augmentations. Evaluation uses a classifier E of
a different architecture and seed: attack accuracy, KNN distance and a Fréchet distance in E's
feature space (not FID: no Inception weights offline).

Methods: `plg` and the baselines `gmi` (unconditional GAN on all public data + GMI's prior/identity
z-search), `no-guidance` (α = 0), `ce` (cross-entropy instead of max-margin), `random` (cGAN
samples without inversion).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from obliviate import ObliviateError
from obliviate.classifier.data import PUBLIC_SHIFTS, ImageData, load_dataset, random_augment, shift_public, split
from obliviate.classifier.models import (CondGenerator, Generator, ProjectionDiscriminator, load_target,
                                         new_classifier, save_classifier)
from obliviate.classifier.robustness import accuracy, train_classifier
from obliviate.config import MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_STEPS, check_ranges
from obliviate.models.device import device_map_of, resolve_device
from obliviate.stats import check_finite_weights
from obliviate.rundir import atomic_file, progress_bar, write_json

METHODS = ("plg", "gmi", "no-guidance", "ce", "random")


@dataclass
class InvertConfig:
    """One `obliviate invert` run. Paper defaults unless marked (scaled)."""

    dataset: str = "digits"
    target: str | None = None           # directory of a saved target; None → train one on the private split
    methods: list[str] = field(default_factory=lambda: ["plg"])   # plg and/or baselines
    seed: int = 0
    split_seed: int = 0
    public: str = "rotate-blur"          # public shift: rotate-blur | inverted | none (same digits pool, disjoint images)
    public_angle: float = 40.0
    public_blur: float = 0.6
    target_epochs: int = 20
    eval_epochs: int = 20
    top_n: int = 30                     # n of top-n selection
    nz: int = 64
    gen_width: int = 32                 # (scaled)
    dis_width: int = 32                 # (scaled)
    gan_iters: int = 200                # generator updates (scaled)
    n_dis: int = 5                      # discriminator updates per generator update
    batch_size: int = 64
    lr_gan: float = 2e-4                # Adam betas (0, 0.9) for G and D
    alpha: float = 0.2                  # weight of the inversion term in L_G
    rec_steps: int = 150                # z-only reconstruction steps (scaled)
    lr_z: float = 0.1
    n_rec: int = 20                     # reconstructions per class
    gmi_lambda: float = 100.0           # GMI: L = L_prior + λ L_id
    model_args: str | None = None       # `--model-args device_map=cpu|cuda|cuda:N` (default: CUDA when present)

    # the declared range of every numeric field (config.check_ranges)
    RANGES: ClassVar[dict[str, str]] = {
        "seed": f"[0, {MAX_SEED}]", "split_seed": f"[0, {MAX_SEED}]", "public_angle": "[-360, 360]",
        "public_blur": "[0, 100]", "target_epochs": f"[1, {MAX_EPOCHS}]", "eval_epochs": f"[1, {MAX_EPOCHS}]",
        "top_n": "[1, 1e7]", "nz": "[1, 4096]", "gen_width": "[1, 4096]", "dis_width": "[1, 4096]",
        "gan_iters": f"[1, {MAX_STEPS}]", "n_dis": "[1, 1000]", "batch_size": f"[1, {MAX_BATCH}]",
        "lr_gan": "(0, 10]", "alpha": "[0, 1e6]", "rec_steps": f"[1, {MAX_STEPS}]", "lr_z": "(0, 10]",
        "n_rec": "[1, 1e6]", "gmi_lambda": "[0, 1e6]",
    }

    def __post_init__(self):
        check_ranges(self)
        device_map_of(self.model_args)
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ObliviateError(f"unknown invert method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
        if self.public not in PUBLIC_SHIFTS:
            raise ObliviateError(f"unknown public shift {self.public!r}; choose one of {', '.join(PUBLIC_SHIFTS)}")


# --------------------------------------------------------------------------- the paper's formulas

def top_n_select(probs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-n pseudo-labelling: for each class k keep the n public images with the highest P[:, k]
    (classes independent, an image may be kept for several classes) — one `topk` over dim 0.

    Args: probs (M, K) = softmax(T(x_pub)). Returns (indices (n·K,), labels (n·K,)), class-major order.
    """
    if n > probs.shape[0]:
        raise ObliviateError(f"top_n={n} exceeds the {probs.shape[0]} public images")
    idx = probs.topk(n, dim=0).indices            # (n, K)
    labels = torch.arange(probs.shape[1], device=probs.device).expand(n, -1)
    return idx.t().reshape(-1), labels.t().reshape(-1)


def max_margin_loss(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Max-margin inversion loss, per sample (minimised).

    .. math:: \\mathcal L_{mm}(l, c) = -l_c + \\max_{j \\ne c} l_j

    Args: logits (N, K); c (N,). Returns (N,).
    """
    true = logits.gather(1, c[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(c, logits.shape[1]).bool(), float("-inf")).amax(1)
    return other - true


def ce_inversion_loss(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Cross-entropy identity loss (the `ce` baseline; GMI's L_id), per sample (N,)."""
    return F.cross_entropy(logits, c, reduction="none")


INV_LOSSES = {"mm": max_margin_loss, "ce": ce_inversion_loss}


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """L_D = E[max(0, 1 − D(x̃, ŷ))] + E[max(0, 1 + D(G(z, c), c))]. Args: (N,) each."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def hinge_g_loss(d_fake: torch.Tensor, inv: torch.Tensor, *, alpha: float) -> torch.Tensor:
    """L_G = −E[D(G(z, c), c)] + α·E[L_inv(T(A(G(z, c))), c)]. Args: d_fake (N,), inv (N,)."""
    return -d_fake.mean() + alpha * inv.mean()


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (here: E's penultimate layer; not FID).

    .. math:: d^2 = \\lVert\\mu_a-\\mu_b\\rVert^2 + \\mathrm{Tr}(\\Sigma_a + \\Sigma_b - 2(\\Sigma_a\\Sigma_b)^{1/2})
    """
    from scipy import linalg

    mu_a, mu_b = feat_a.mean(0), feat_b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(feat_a, rowvar=False)), np.atleast_2d(np.cov(feat_b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():      # singular product: regularise as pytorch-fid does
        eye = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eye) @ (cov_b + eye))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(covmean)))


def knn_distance(rec_feat: torch.Tensor, rec_y: torch.Tensor, priv_feat: torch.Tensor, priv_y: torch.Tensor) -> float:
    """Mean over reconstructions of the squared L2 distance (in E's features) to the nearest private
    image of the same class."""
    d = torch.cdist(rec_feat, priv_feat).pow(2)
    d = d.masked_fill(rec_y[:, None] != priv_y[None, :], float("inf"))
    return float(d.min(1).values.mean())


# --------------------------------------------------------------------------- GAN training

def gan_step(G: nn.Module, D: nn.Module, T: nn.Module, *,
             sample_real: Callable[[], tuple[torch.Tensor, torch.Tensor | None]], num_classes: int, nz: int,
             batch_size: int, n_dis: int, alpha: float, inv_loss: Callable, augment: Callable,
             opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, conditional: bool = True) -> tuple[float, float]:
    """n_dis discriminator updates (real = x + U(0, 1/256), fakes NOT augmented), then one generator
    update whose inversion term alone sees `augment(fake)`. Returns (L_D, L_G)."""
    dev = next(G.parameters()).device
    d_loss = torch.zeros((), device=dev)
    for _ in range(n_dis):
        x, y = sample_real()
        x = x + torch.rand_like(x) / 256
        z = torch.randn(len(x), nz, device=dev)
        c = torch.randint(0, num_classes, (len(x),), device=dev)
        with torch.no_grad():
            fake = G(z, c) if conditional else G(z)
        d_loss = hinge_d_loss(D(x, y) if conditional else D(x), D(fake, c) if conditional else D(fake))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
    z = torch.randn(batch_size, nz, device=dev)
    c = torch.randint(0, num_classes, (batch_size,), device=dev)
    fake = G(z, c) if conditional else G(z)
    d_fake = D(fake, c) if conditional else D(fake)
    inv = inv_loss(T(augment(fake)), c) if alpha > 0 else torch.zeros(batch_size, device=dev)
    g_loss = hinge_g_loss(d_fake, inv, alpha=alpha)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    check_finite_weights([*G.named_parameters(), *D.named_parameters()], what="invert: GAN step")
    return d_loss.item(), g_loss.item()


def train_gan(public_x: torch.Tensor, public_y: torch.Tensor | None, T: nn.Module, *, cfg: InvertConfig,
              num_classes: int, alpha: float, inv: str, conditional: bool, desc: str) -> tuple[nn.Module, list]:
    """Train a (conditional) generator on (pseudo-labelled) public images; T frozen in eval mode."""
    c, size = public_x.shape[1], public_x.shape[2]
    G = (CondGenerator(nz=cfg.nz, num_classes=num_classes, out_ch=c, size=size, width=cfg.gen_width) if conditional
         else Generator(nz=cfg.nz, out_ch=c, size=size, width=cfg.gen_width))
    D = ProjectionDiscriminator(in_ch=c, num_classes=num_classes if conditional else 0, width=cfg.dis_width)
    G, D = G.to(public_x.device), D.to(public_x.device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_gan, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_gan, betas=(0.0, 0.9))
    T.eval()
    for p in T.parameters():
        p.requires_grad_(False)

    def sample_real():
        idx = torch.randint(0, len(public_x), (cfg.batch_size,), device=public_x.device)
        return public_x[idx], (public_y[idx] if public_y is not None else None)

    losses = []
    G.train()
    for _ in progress_bar(range(cfg.gan_iters), desc=desc):
        losses.append(gan_step(G, D, T, sample_real=sample_real, num_classes=num_classes, nz=cfg.nz,
                               batch_size=cfg.batch_size, n_dis=cfg.n_dis, alpha=alpha, inv_loss=INV_LOSSES[inv],
                               augment=random_augment, opt_g=opt_g, opt_d=opt_d, conditional=conditional))
    return G.eval(), D.eval(), losses


# --------------------------------------------------------------------------- reconstruction

def reconstruct(G: nn.Module, T: nn.Module, classes: torch.Tensor, *, cfg: InvertConfig, inv: str = "mm") -> torch.Tensor:
    """PLG-MI step 3: G and T fixed; optimise only z (Adam lr_z) on
    L_inv(T(A₁(G(z,c))), c) + L_inv(T(A₂(G(z,c))), c), two independent augmentations. Returns G(z*, c)."""
    loss_fn = INV_LOSSES[inv]
    z = torch.randn(len(classes), cfg.nz, device=classes.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=cfg.lr_z)
    for _ in range(cfg.rec_steps):
        fake = G(z, classes)
        loss = (loss_fn(T(random_augment(fake)), classes) + loss_fn(T(random_augment(fake)), classes)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return G(z, classes)


def reconstruct_gmi(G: nn.Module, D: nn.Module, T: nn.Module, classes: torch.Tensor, *, cfg: InvertConfig) -> torch.Tensor:
    """GMI (Zhang et al. 2020) z-search on an unconditional GAN: min_z −D(G(z)) + λ·CE(T(G(z)), c)."""
    z = torch.randn(len(classes), cfg.nz, device=classes.device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=cfg.lr_z)
    for p in D.parameters():
        p.requires_grad_(False)
    for _ in range(cfg.rec_steps):
        fake = G(z)
        loss = (-D(fake) + cfg.gmi_lambda * F.cross_entropy(T(fake), classes, reduction="none")).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return G(z)


# --------------------------------------------------------------------------- evaluation

def attack_metrics(E: nn.Module, rec: torch.Tensor, rec_y: torch.Tensor, private: ImageData) -> dict:
    """Acc@1 / Acc@5 of E on reconstructions, KNN distance and Fréchet distance in E's feature space."""
    E.eval()
    with torch.no_grad():
        logits = E(rec)
        f_rec, f_priv = E.features(rec), E.features(private.x)
    top5 = logits.topk(min(5, logits.shape[1]), 1).indices
    return {"acc1": float((top5[:, 0] == rec_y).float().mean()),
            "acc5": float((top5 == rec_y[:, None]).any(1).float().mean()),
            "knn": knn_distance(f_rec, rec_y, f_priv, private.y),
            "fd": frechet_distance(f_rec.double().cpu().numpy(), f_priv.double().cpu().numpy())}


def invert_splits(cfg: InvertConfig) -> tuple[ImageData, ImageData, torch.Tensor]:
    """(private train, private test, shifted public images). Public images are disjoint from private ones."""
    data = load_dataset(cfg.dataset)
    private, private_test, public = split(data, [0.45, 0.1, 0.45], seed=cfg.split_seed)
    return private, private_test, shift_public(public.x, kind=cfg.public, max_angle=cfg.public_angle,
                                               blur=cfg.public_blur, seed=cfg.split_seed)


def invert_models(cfg: InvertConfig, private: ImageData, out: Path | None, *,
                  allow_pickle: bool = False) -> tuple[nn.Module, nn.Module]:
    """(target T, evaluation classifier E). T is `cfg.target`, else a CNN trained on the private split (saved to
    out/target); E has a different architecture and seed and is trained on the same private data."""
    K, shape = private.num_classes, tuple(private.x.shape[1:])
    if cfg.target:
        T, _ = load_target(cfg.target, private, dataset=cfg.dataset, allow_pickle=allow_pickle)
    else:
        torch.manual_seed(cfg.seed)
        T = new_classifier("cnn", in_ch=shape[0], size=shape[1], num_classes=K).to(private.x.device)
        train_classifier(T, private, epochs=cfg.target_epochs, desc="target")
        if out is not None:
            save_classifier(T, out / "target", arch="cnn", meta={"dataset": cfg.dataset, "split_seed": cfg.split_seed,
                                                                   "seed": cfg.seed, "role": "invert target"})
    torch.manual_seed(cfg.seed + 1000)      # E: different architecture AND seed, same private data
    E = new_classifier("evalnet", in_ch=shape[0], size=shape[1], num_classes=K).to(private.x.device)
    train_classifier(E, private, epochs=cfg.eval_epochs, desc="eval classifier")
    return T, E


def method_reconstructions(method: str, G: nn.Module, D: nn.Module, T: nn.Module, classes: torch.Tensor, *,
                           cfg: InvertConfig) -> torch.Tensor:
    """One method's reconstructions of `classes` (N,) from its trained GAN (G, D): (N, C, H, W)."""
    torch.manual_seed(cfg.seed + 7)
    if method == "random":
        with torch.no_grad():
            return G(torch.randn(len(classes), cfg.nz, device=classes.device), classes)
    if method == "gmi":
        return reconstruct_gmi(G, D, T, classes, cfg=cfg)
    return reconstruct(G, T, classes, cfg=cfg, inv="ce" if method == "ce" else "mm")


def run_methods(cfg: InvertConfig, T: nn.Module, E: nn.Module, public_x: torch.Tensor, pub_x: torch.Tensor,
                pub_y: torch.Tensor, classes: torch.Tensor, private: ImageData) -> tuple[dict, dict, dict]:
    """Each of `cfg.methods`: train its GAN (shared between methods that need the same one), reconstruct
    `classes`, score with E (and T). `pub_x`, `pub_y` are the top-n pseudo-labelled public images, `public_x`
    all of them (the unconditional GMI GAN). Returns (metrics, reconstructions, seconds), each keyed by method."""
    # (conditional, alpha, inversion loss) of the GAN each method needs; GANs are shared within a run
    gan_of = {"plg": (True, cfg.alpha, "mm"), "random": (True, cfg.alpha, "mm"), "no-guidance": (True, 0.0, "mm"),
              "ce": (True, cfg.alpha, "ce"), "gmi": (False, 0.0, "mm")}
    gans: dict[tuple, tuple] = {}
    results, recs, times = {}, {}, {}
    for method in cfg.methods:
        t_m = time.time()
        key = gan_of[method]
        if key not in gans:
            torch.manual_seed(cfg.seed + 100 * list(gan_of.values()).index(key))
            conditional, alpha, inv = key
            gans[key] = train_gan(pub_x if conditional else public_x, pub_y if conditional else None, T, cfg=cfg,
                                  num_classes=private.num_classes, alpha=alpha, inv=inv, conditional=conditional,
                                  desc=f"GAN[{method}]")
        G, D, _ = gans[key]
        rec = method_reconstructions(method, G, D, T, classes, cfg=cfg)
        results[method] = attack_metrics(E, rec, classes, private)
        with torch.no_grad():
            results[method]["target_acc1"] = float((T(rec).argmax(1) == classes).float().mean())
        recs[method] = rec
        times[method] = round(time.time() - t_m, 2)
    return results, recs, times


def invert(cfg: InvertConfig, out_dir: str | Path | None = None, *, allow_pickle: bool = False,
           report: Callable | None = None) -> dict:
    """Run PLG-MI and/or its baselines end to end; write results.json and reconstructions into `out_dir`.

    allow_pickle: load a pickle `--target` checkpoint (the `--allow-pickle` flag; never a config key).
    report: `report(out_dir, result, recs=, classes=, private=)` writes the run's pages
    (classifier.report.write_invert_report; passed in, since the attack modules do not import the later report
    module)."""
    from obliviate.config import write_run_info

    t0 = time.time()
    out = Path(out_dir) if out_dir is not None else None
    dev = resolve_device(device_map_of(cfg.model_args))  # fp32 throughout: see classifier/__init__
    if out is not None:
        write_run_info(out, cfg, seed=cfg.seed, extra={"device": str(dev)})
    private, private_test, public_x = invert_splits(cfg)
    private, private_test, public_x = private.to(dev), private_test.to(dev), public_x.to(dev)
    if cfg.top_n > len(public_x):
        raise ObliviateError(f"top_n={cfg.top_n} exceeds the {len(public_x)} public images")
    T, E = invert_models(cfg, private, out, allow_pickle=allow_pickle)
    t_models = time.time()

    torch.manual_seed(cfg.seed)
    T.eval()
    with torch.no_grad():
        probs = F.softmax(T(public_x), 1)
    sel_idx, sel_y = top_n_select(probs, cfg.top_n)
    classes = torch.arange(private.num_classes, device=dev).repeat_interleave(cfg.n_rec)
    results, recs, times = run_methods(cfg, T, E, public_x, public_x[sel_idx], sel_y, classes, private)
    real_ref = attack_metrics(E, private_test.x, private_test.y, private)   # held-out real images as a reference
    result = {"dataset": cfg.dataset, "seed": cfg.seed, "methods": results, "real_test_reference": real_ref,
              "target_test_acc": accuracy(T, private_test.x, private_test.y),
              "eval_test_acc": accuracy(E, private_test.x, private_test.y),
              "top_n": cfg.top_n, "gan_iters": cfg.gan_iters, "n_public": len(public_x), "n_private": len(private),
              "pseudo_label_purity": None, "device": str(dev),
              "wall_time_s": {"models": round(t_models - t0, 2), **times, "total": round(time.time() - t0, 2)}}
    result["pseudo_label_purity"] = _purity(cfg, sel_idx, sel_y)
    if out is not None:
        from safetensors.torch import save_file

        with atomic_file(out / "reconstructions.safetensors") as tmp:
            save_file({m: r.contiguous() for m, r in recs.items()}, str(tmp))
        write_json(out / "results.json", result)
        if report is not None:
            report(out, result, recs=recs, classes=classes, private=private)
    result["reconstructions"] = recs
    return result


def _purity(cfg: InvertConfig, sel_idx: torch.Tensor, sel_y: torch.Tensor) -> float:
    """Share of top-n pseudo-labels that equal the public image's true digit (diagnostic only; unused by the attack)."""
    data = load_dataset(cfg.dataset)
    _, _, public = split(data, [0.45, 0.1, 0.45], seed=cfg.split_seed)
    return float((public.y[sel_idx.cpu()] == sel_y.cpu()).float().mean())
