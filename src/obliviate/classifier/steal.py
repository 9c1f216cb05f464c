"""DFHL-RS: data-free hard-label robustness stealing (Yuan et al., AAAI 2024, arXiv:2312.05924).

The attacker has a hard-label oracle of an adversarially trained target, no natural data, and wants a
clone that is accurate *and* robust. Each epoch: (1) a generator G with trainable latents z synthesises
a batch that the frozen clone labels confidently and diversely; the lowest-loss batch goes to a memory
bank 𝓑. (2) The clone trains on High-Entropy Examples (HEE) of strongly augmented 𝓑 samples, labelled
by the oracle. Baselines (`mode`): Data-Free AT / AE / UE and plain hard-label distillation.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.stagecache import read_whole
from obliviate.classifier.data import ImageData, crop_flip, load_dataset, split, strong_augment
from obliviate.classifier.models import Generator, load_target, new_classifier, save_classifier
from obliviate.rundir import atomic_file, progress_bar, write_json
from obliviate.classifier.oracle import HardLabelOracle
from obliviate.classifier.robustness import (ROBUSTNESS_ATTACKS, accuracy, evaluate_robustness, pgd, predict,
                                             resolve_attacks, robust_accuracy, train_classifier)
from obliviate.config import MAX_BATCH, MAX_EPOCHS, MAX_SEED, MAX_STEPS, check_ranges
from obliviate.models.device import device_map_of, resolve_device
from obliviate.stats import check_finite_weights

MODES = ("hee", "at", "ae", "ue", "plain")


@dataclass
class StealConfig:
    """One `obliviate steal` run. Paper defaults unless marked (scaled)."""

    dataset: str = "digits"
    target: str | None = None          # directory of a saved target; None → adversarially train one
    mode: str = "hee"                  # hee | at | ae | ue | plain
    seed: int = 0
    split_seed: int = 0                # train/val/test split of the natural data (target + evaluation only)
    eps: float = 0.1                   # L∞ radius of target PGD-AT and of the evaluation (8×8 digits)
    target_epochs: int = 20
    target_width: int = 16
    clone_width: int = 16
    epochs: int = 40                   # (scaled)
    budget: int | None = None          # query budget; None → epochs · n_c · batch_size
    batch_size: int = 64               # B: clone batch = queries per clone step (scaled)
    gen_batch: int = 64                # synthetic images appended to 𝓑 per epoch (scaled)
    n_g: int = 10                      # N_G generator steps per epoch (scaled)
    n_c: int = 30                      # N_C clone steps per epoch (scaled)
    nz: int = 64
    gen_width: int = 32
    lr_g: float = 2e-3                 # Adam on θ_G, betas (0.5, 0.999)
    lr_z: float = 1e-2                 # Adam on z
    ls_eps: float = 0.2                # label smoothing ε_ls
    lam_div: float = 3.0               # λ of the diversity term
    hee_eta: float = 0.03              # η
    hee_steps: int = 10                # S
    hee_noise: float = 0.001
    lr_c: float = 0.05                 # clone SGD, momentum 0.9, wd 1e-4, cosine to lr_c_min (paper 0.1)
    lr_c_min: float = 2e-4
    base_eps: float | None = None      # ε of the at/ae/ue baselines' perturbations (None → eps)
    base_steps: int = 10
    val_every: int = 3
    val_n: int = 150                   # validation images for checkpoint selection
    eval_attacks: list[str] | None = None  # subset of fgsm,pgd20,pgd100,cw100,aa (None → all)
    aa_n: int = 100                    # fixed AutoAttack subset: the first aa_n test images
    model_args: str | None = None      # `--model-args device_map=cpu|cuda|cuda:N` (default: CUDA when present)

    # the declared range of every numeric field (config.check_ranges)
    RANGES: ClassVar[dict[str, str]] = {
        "seed": f"[0, {MAX_SEED}]", "split_seed": f"[0, {MAX_SEED}]", "eps": "(0, 1]", "base_eps": "(0, 1]",
        "target_epochs": f"[1, {MAX_EPOCHS}]", "epochs": f"[1, {MAX_EPOCHS}]", "target_width": "[1, 4096]",
        "clone_width": "[1, 4096]", "gen_width": "[1, 4096]", "nz": "[1, 4096]", "budget": "[1, 1e12]",
        "batch_size": f"[1, {MAX_BATCH}]", "gen_batch": f"[1, {MAX_BATCH}]", "n_g": f"[1, {MAX_STEPS}]",
        "n_c": f"[1, {MAX_STEPS}]", "lr_g": "(0, 10]", "lr_z": "(0, 10]", "lr_c": "(0, 10]", "lr_c_min": "[0, 10]",
        "ls_eps": "[0, 1)", "lam_div": "[0, 1e6]", "hee_eta": "(0, 1]", "hee_steps": "[1, 10000]",
        "hee_noise": "[0, 1]", "base_steps": "[1, 10000]", "val_every": f"[1, {MAX_EPOCHS}]", "val_n": "[1, 1e7]",
        "aa_n": "[0, 1e7]",  # 0: no AutoAttack
    }

    def __post_init__(self):
        check_ranges(self)
        device_map_of(self.model_args)
        if self.mode not in MODES:
            raise ObliviateError(f"unknown steal mode {self.mode!r}; choose one of {', '.join(MODES)}")
        bad = sorted(set(self.eval_attacks or []) - set(ROBUSTNESS_ATTACKS))
        if bad:
            raise ObliviateError(f"unknown eval attack(s) {', '.join(bad)}; "
                                 f"choose from {', '.join(ROBUSTNESS_ATTACKS)}")


# --------------------------------------------------------------------------- the paper's formulas

def smooth_labels(y: torch.Tensor, num_classes: int, *, eps: float) -> torch.Tensor:
    """Label smoothing of the generator's targets.

    .. math:: \\tilde y_k = 1 - \\epsilon_{ls} \\text{ if } k = y, \\quad \\epsilon_{ls}/(K-1) \\text{ otherwise}

    Args: y (N,) int64. Returns (N, K), rows sum to 1.
    """
    out = torch.full((len(y), num_classes), eps / (num_classes - 1), device=y.device)
    return out.scatter_(1, y[:, None], 1 - eps)


def diversity_loss(probs: torch.Tensor, *, lam: float) -> torch.Tensor:
    """Class-diversity term (negative base-10 entropy of the batch-mean prediction; minimised).

    .. math:: \\mathcal L_{div} = \\lambda \\sum_k \\bar p_k \\log_{10} \\bar p_k, \\quad \\bar p = \\tfrac1N \\sum_i p_i

    Args: probs (N, K) softmax outputs of the clone.
    """
    p_bar = probs.mean(0)
    return lam * (p_bar * torch.log10(p_bar.clamp_min(1e-12))).sum()


def generator_loss(logits: torch.Tensor, y_smooth: torch.Tensor, *, lam: float) -> torch.Tensor:
    """L_G = KL(ỹ ‖ softmax(M_C(A(G(z))))) + λ Σ_k p̄_k log₁₀ p̄_k (KL averaged over the batch).

    Args: logits (N, K) of the clone on augmented fakes; y_smooth (N, K)."""
    log_p = F.log_softmax(logits, 1)
    kl = (y_smooth * (y_smooth.clamp_min(1e-12).log() - log_p)).sum(1).mean()
    return kl + diversity_loss(log_p.exp(), lam=lam)


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(l)) = −Σ_k p_k log p_k per row. Args: logits (N, K). Returns (N,)."""
    log_p = F.log_softmax(logits, 1)
    return -(log_p.exp() * log_p).sum(1)


def high_entropy_examples(clone: nn.Module, x: torch.Tensor, *, eta: float = 0.03, steps: int = 10,
                          noise: float = 0.001) -> torch.Tensor:
    """HEE: sign-ascent on the clone's prediction entropy, NO ε-ball projection, clone in eval mode.

    .. math:: x^0 = x + 0.001\\,\\mathcal N(0, I), \\quad
              x^{t+1} = \\mathrm{clip}_{[0,1]}\\big(x^t + \\eta\\,\\mathrm{sign}\\,\\nabla_x H(\\mathrm{softmax}(M_C(x^t)))\\big)
    """
    was_training = clone.training
    clone.eval()
    x_adv = (x + noise * torch.randn_like(x)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(prediction_entropy(clone(x_adv)).sum(), x_adv)
        x_adv = (x_adv.detach() + eta * grad.sign()).clamp(0, 1)
    clone.train(was_training)
    return x_adv.detach()


def uncertain_examples(clone: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 10) -> torch.Tensor:
    """Data-Free UE baseline: sign-descent on KL(u ‖ softmax(M_C(x))) (u uniform) inside the ε-ball."""
    clone.eval()
    k = None
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        log_p = F.log_softmax(clone(x_adv), 1)
        k = k or log_p.shape[1]
        kl = (-math.log(k) - log_p).sum(1).div(k).sum()   # Σ_k u_k (log u_k − log p_k)
        grad, = torch.autograd.grad(kl, x_adv)
        x_adv = x_adv.detach() - 2.5 * eps / steps * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def clone_adversarial_examples(clone: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 10) -> torch.Tensor:
    """Data-Free AE baseline: PGD examples of the clone against its own predictions, queried to the target."""
    clone.eval()
    with torch.no_grad():
        y_self = clone(x).argmax(1)
    return pgd(clone, x, y_self, eps=eps, alpha=2.5 * eps / steps, steps=steps)


def query_inputs(mode: str, clone: nn.Module, x: torch.Tensor, cfg: StealConfig) -> torch.Tensor:
    """The images each mode sends to the oracle."""
    eps = cfg.base_eps if cfg.base_eps is not None else cfg.eps
    if mode == "hee":
        return high_entropy_examples(clone, x, eta=cfg.hee_eta, steps=cfg.hee_steps, noise=cfg.hee_noise)
    if mode == "ue":
        return uncertain_examples(clone, x, eps=eps, steps=cfg.base_steps)
    if mode == "ae":
        return clone_adversarial_examples(clone, x, eps=eps, steps=cfg.base_steps)
    return x  # plain, at: the (augmented) synthetic images themselves


# --------------------------------------------------------------------------- the two stages

def generate_batch(generator: Generator, clone: nn.Module, *, num_classes: int, cfg: StealConfig,
                   pad: int) -> tuple[torch.Tensor, float]:
    """Stage 1 (no queries): N_G Adam steps on (θ_G, z); returns the lowest-L_G batch and its loss.

    The optimiser is created here, i.e. afresh every epoch; the clone is frozen (eval, no grads)."""
    clone.eval()
    for p in clone.parameters():
        p.requires_grad_(False)
    dev = next(clone.parameters()).device
    z = torch.randn(cfg.gen_batch, cfg.nz, device=dev, requires_grad=True)
    y = torch.randint(0, num_classes, (cfg.gen_batch,), device=dev)
    y_smooth = smooth_labels(y, num_classes, eps=cfg.ls_eps)
    opt = torch.optim.Adam([{"params": generator.parameters(), "lr": cfg.lr_g}, {"params": [z], "lr": cfg.lr_z}],
                           betas=(0.5, 0.999))
    generator.train()
    best_loss, best_x = float("inf"), None
    for _ in range(cfg.n_g):
        fake = generator(z)
        loss = generator_loss(clone(crop_flip(fake, pad=pad)), y_smooth, lam=cfg.lam_div)
        if loss.item() < best_loss:        # checked before the update that this loss drives
            best_loss, best_x = loss.item(), fake.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in clone.parameters():
        p.requires_grad_(True)
    return best_x, best_loss


def clone_step(clone: nn.Module, opt: torch.optim.Optimizer, oracle: HardLabelOracle, bank: torch.Tensor,
               cfg: StealConfig) -> tuple[float, float]:
    """Stage 2, one step: sample B from all of 𝓑, strong augmentation, mode's query images, B counted
    hard-label queries, CE update (PGD-AT of the clone for mode 'at'). Returns (loss, mean entropy of queries)."""
    idx = torch.randint(0, len(bank), (cfg.batch_size,), device=bank.device)
    x = strong_augment(bank[idx])
    x_q = query_inputs(cfg.mode, clone, x, cfg)
    y_hat = oracle(x_q)
    x_train = x_q
    if cfg.mode == "at":
        eps = cfg.base_eps if cfg.base_eps is not None else cfg.eps
        clone.eval()
        x_train = pgd(clone, x_q, y_hat, eps=eps, alpha=2.5 * eps / cfg.base_steps, steps=cfg.base_steps)
    clone.train()
    logits = clone(x_train)
    loss = F.cross_entropy(logits, y_hat)
    opt.zero_grad()
    loss.backward()
    opt.step()
    check_finite_weights(clone.named_parameters(), what="steal: clone step")
    with torch.no_grad():
        ent = prediction_entropy(logits).mean().item()
    return loss.item(), ent


def run_dfhl_rs(cfg: StealConfig, oracle: HardLabelOracle, *, shape: tuple[int, int, int], num_classes: int,
                val: ImageData | None = None) -> dict:
    """The DFHL-RS loop. Returns {clone (best on validation), generator, bank, history, best_epoch}."""
    c, size, _ = shape
    dev = oracle.device
    clone = new_classifier("cnn", in_ch=c, size=size, num_classes=num_classes, width=cfg.clone_width).to(dev)
    generator = Generator(nz=cfg.nz, out_ch=c, size=size, width=cfg.gen_width).to(dev)
    opt = torch.optim.SGD(clone.parameters(), lr=cfg.lr_c, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs, eta_min=cfg.lr_c_min)
    bank_parts: list[torch.Tensor] = []
    hist = {k: [] for k in ("epoch", "gen_loss", "clone_loss", "query_entropy", "queries", "val_clean", "val_pgd20")}
    best = (-1.0, None, 0)
    eval_eps = cfg.eps
    pad = max(1, size // 8)
    bar = progress_bar(range(1, cfg.epochs + 1), desc=f"dfhl-rs[{cfg.mode}]")
    for epoch in bar:
        if oracle.remaining is not None and oracle.remaining < cfg.batch_size:
            break
        x_best, g_loss = generate_batch(generator, clone, num_classes=num_classes, cfg=cfg, pad=pad)
        bank_parts.append(x_best)
        bank = torch.cat(bank_parts)
        losses, ents = [], []
        for _ in range(cfg.n_c):
            if oracle.remaining is not None and oracle.remaining < cfg.batch_size:
                break
            loss, ent = clone_step(clone, opt, oracle, bank, cfg)
            losses.append(loss)
            ents.append(ent)
        sched.step()
        hist["epoch"].append(epoch)
        hist["gen_loss"].append(g_loss)
        hist["clone_loss"].append(sum(losses) / max(1, len(losses)))
        hist["query_entropy"].append(sum(ents) / max(1, len(ents)))
        hist["queries"].append(oracle.queries)
        if val is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
            xv, yv = val.x[: cfg.val_n], val.y[: cfg.val_n]
            clean = accuracy(clone, xv, yv)
            rob = robust_accuracy(clone, xv, yv, eps=eval_eps, steps=20)
            hist["val_clean"].append(clean)
            hist["val_pgd20"].append(rob)
            if clean + rob > best[0]:
                best = (clean + rob, copy.deepcopy(clone.state_dict()), epoch)
            bar.set_postfix(q=oracle.queries, val_clean=f"{clean:.2f}", val_pgd20=f"{rob:.2f}")
        else:
            hist["val_clean"].append(None)
            hist["val_pgd20"].append(None)
    if best[1] is not None:
        clone.load_state_dict(best[1])
    return {"clone": clone.eval(), "generator": generator, "bank": torch.cat(bank_parts) if bank_parts else None,
            "history": hist, "best_epoch": best[2] or (hist["epoch"][-1] if hist["epoch"] else 0)}


# --------------------------------------------------------------------------- the whole run

def load_or_train_target(cfg: StealConfig, train: ImageData, out_dir: Path | None, *,
                         allow_pickle: bool = False) -> tuple[nn.Module, dict]:
    """Load `cfg.target`, or PGD-adversarially train a CNN on `train` (saved to out_dir/target)."""
    if cfg.target:
        return load_target(cfg.target, train, dataset=cfg.dataset, allow_pickle=allow_pickle)
    shape = tuple(train.x.shape[1:])
    torch.manual_seed(cfg.seed)
    model = new_classifier("cnn", in_ch=shape[0], size=shape[1], num_classes=train.num_classes,
                           width=cfg.target_width).to(train.x.device)
    train_classifier(model, train, epochs=cfg.target_epochs, adv_eps=cfg.eps, desc="target PGD-AT")
    meta = {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "adv_eps": cfg.eps, "seed": cfg.seed,
            "training": "PGD-AT (10 steps, alpha 2.5eps/10)", "epochs": cfg.target_epochs}
    if out_dir is not None:
        save_classifier(model, out_dir / "target", arch="cnn", meta=meta)
    return model, {"arch": "cnn", "meta": meta}


def _target_metrics(cfg: StealConfig, target: nn.Module, test: ImageData, attacks: tuple[str, ...],
                    target_dir: Path | None) -> dict:
    """Evaluate the target once; cached as metrics.json beside the saved target, keyed by the settings."""
    key = {"eps": cfg.eps, "split_seed": cfg.split_seed, "attacks": list(attacks), "aa_n": cfg.aa_n,
           "dataset": cfg.dataset, "seed": cfg.seed}
    cache = target_dir / "metrics.json" if target_dir is not None else None
    if cache is not None and cache.exists():
        saved = read_whole(cache)  # a broken cache is recomputed, never trusted
        if isinstance(saved, dict) and saved.get("key") == key and "metrics" in saved:
            return saved["metrics"]
    metrics = evaluate_robustness(target, test.x, test.y, eps=cfg.eps, num_classes=test.num_classes,
                                  aa_n=cfg.aa_n, attacks=attacks, seed=cfg.seed)
    if cache is not None:
        try:
            write_json(cache, {"key": key, "metrics": metrics})
        except (OSError, ObliviateError):  # the cache is an optimisation: a full disk only loses it
            pass
    return metrics


def steal(cfg: StealConfig, out_dir: str | Path | None = None, *, allow_pickle: bool = False,
          report: Callable | None = None) -> dict:
    """Run DFHL-RS (or a baseline) end to end; write results.json and models into `out_dir`.

    allow_pickle: load a pickle `--target` checkpoint (the `--allow-pickle` flag; never a config key).
    report: `report(out_dir, result, bank=...)` writes the run's pages (classifier.report.write_steal_report;
    passed in, since the attack modules do not import the later report module)."""
    from obliviate.config import write_run_info

    t0 = time.time()
    attacks, not_computed = resolve_attacks(cfg.eval_attacks)  # before any training
    for name, why in not_computed.items():
        print(f"obliviate steal: {name}: {why}", file=sys.stderr)
    out = Path(out_dir) if out_dir is not None else None
    if cfg.target and (Path(cfg.target) / "model.json").exists():   # evaluate on the target's own test split
        meta = read_json_object(Path(cfg.target) / "model.json", what="--target").get("meta", {})
        cfg.split_seed = int(meta.get("split_seed", cfg.split_seed))
    dev = resolve_device(device_map_of(cfg.model_args))  # fp32 throughout: see classifier/__init__
    if out is not None:
        write_run_info(out, cfg, seed=cfg.seed, extra={"device": str(dev)})
    data = load_dataset(cfg.dataset)
    train, val, test = (part.to(dev) for part in split(data, [0.6, 0.2, 0.2], seed=cfg.split_seed))
    target, spec = load_or_train_target(cfg, train, out, allow_pickle=allow_pickle)
    target_dir = Path(cfg.target) if cfg.target else (out / "target" if out is not None else None)
    t_target = time.time()
    target_metrics = _target_metrics(cfg, target, test, attacks, target_dir)
    t_attack = time.time()
    torch.manual_seed(cfg.seed)
    oracle = HardLabelOracle(target, budget=cfg.budget)
    res = run_dfhl_rs(cfg, oracle, shape=tuple(train.x.shape[1:]), num_classes=train.num_classes, val=val)
    t_eval = time.time()
    clone = res["clone"]
    clone_metrics = evaluate_robustness(clone, test.x, test.y, eps=cfg.eps, num_classes=test.num_classes,
                                        aa_n=cfg.aa_n, attacks=attacks, seed=cfg.seed)
    agreement = float((predict(clone, test.x) == predict(target, test.x)).float().mean())
    target_val = {"clean": accuracy(target, val.x[: cfg.val_n], val.y[: cfg.val_n]),
                  "pgd20": robust_accuracy(target, val.x[: cfg.val_n], val.y[: cfg.val_n], eps=cfg.eps, steps=20)}
    result = {"mode": cfg.mode, "dataset": cfg.dataset, "seed": cfg.seed, "eps": cfg.eps,
              "target": target_metrics, "clone": clone_metrics, "agreement": agreement,
              "queries": oracle.queries, "oracle_calls": oracle.calls, "best_epoch": res["best_epoch"],
              "bank_size": 0 if res["bank"] is None else len(res["bank"]), "history": res["history"],
              "target_val": target_val, "n_test": len(test), "aa_n": min(cfg.aa_n, len(test)),
              "not_computed": not_computed, "device": str(dev),
              "wall_time_s": {"target": round(t_target - t0, 2), "target_eval": round(t_attack - t_target, 2),
                              "attack": round(t_eval - t_attack, 2), "clone_eval": round(time.time() - t_eval, 2),
                              "total": round(time.time() - t0, 2)}}
    if out is not None:
        from safetensors.torch import save_file

        save_classifier(clone, out / "clone", arch="cnn", meta={"dataset": cfg.dataset, "mode": cfg.mode,
                                                                "seed": cfg.seed, "split_seed": cfg.split_seed})
        if res["bank"] is not None:
            with atomic_file(out / "memory_bank.safetensors") as tmp:
                save_file({"bank": res["bank"].contiguous()}, str(tmp))
        write_json(out / "results.json", result)
        if report is not None:
            report(out, result, bank=res["bank"])
    result["clone_model"] = clone
    return result

