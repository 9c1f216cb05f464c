"""Training targets (standard or PGD adversarial training) and L∞ robustness evaluation.

Evaluation follows DFHL-RS's table: clean accuracy, FGSM, PGD-20, PGD-100, CW-100 (PGD on the CW
margin loss) and the standard AutoAttack (torchattacks' `AutoAttack(version='standard')`: APGD-CE,
APGD-T, FAB-T, Square) on a fixed subset (the first `aa_n` test images).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from obliviate.classifier.data import ImageData
from obliviate.rundir import progress_bar
from obliviate.stats import check_finite_weights


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x[i: i + batch_size]).argmax(1) == y[i: i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))
    return correct / max(1, len(x))


def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i: i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CW margin loss (maximised by the attacker), mean over the batch.

    .. math:: \\ell_{CW}(l, y) = \\max_{j \\ne y} l_j - l_y

    Args: logits (N, K); y (N,).
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).mean()


LOSSES = {"ce": F.cross_entropy, "cw": cw_loss}


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, alpha: float, steps: int,
        loss: str = "ce", random_start: bool = True) -> torch.Tensor:
    """L∞ PGD (Madry et al. 2018): x^{t+1} = Π_{B∞(x, ε) ∩ [0,1]}(x^t + α·sign ∇ℓ(M(x^t), y)).

    `steps=1, alpha=eps, random_start=False` is FGSM. The model's train/eval mode is left unchanged."""
    loss_fn = LOSSES[loss]
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1) if random_start else x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(loss_fn(model(x_adv), y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def train_classifier(model: nn.Module, data: ImageData, *, epochs: int, lr: float = 0.05, batch_size: int = 64,
                     adv_eps: float = 0.0, adv_steps: int = 10, weight_decay: float = 5e-4,
                     desc: str = "train") -> nn.Module:
    """SGD (momentum 0.9, cosine lr) on CE; with `adv_eps > 0`, PGD-AT: train on PGD-`adv_steps` examples
    (α = 2.5ε/steps) of each batch (Madry et al.)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = (len(data) + batch_size - 1) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in progress_bar(range(epochs), desc=desc):
        perm = torch.randperm(len(data), device=data.x.device)
        for i in range(0, len(data), batch_size):
            x, y = data.x[perm[i: i + batch_size]], data.y[perm[i: i + batch_size]]
            if adv_eps > 0:
                model.eval()
                x = pgd(model, x, y, eps=adv_eps, alpha=2.5 * adv_eps / adv_steps, steps=adv_steps)
            model.train()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            check_finite_weights(model.named_parameters(), what=f"{desc} (classifier training)")
            sched.step()
    return model.eval()


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int,
                    loss: str = "ce", batch_size: int = 256) -> float:
    """Accuracy under PGD-`steps` (α = ε/4, random start); `steps=1` is FGSM (α = ε, no random start)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i: i + batch_size], y[i: i + batch_size]
        if steps == 1:
            adv = pgd(model, xb, yb, eps=eps, alpha=eps, steps=1, loss=loss, random_start=False)
        else:
            adv = pgd(model, xb, yb, eps=eps, alpha=eps / 4, steps=steps, loss=loss)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / max(1, len(x))


def autoattack_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, num_classes: int,
                        seed: int = 0) -> float:
    """Accuracy under the standard AutoAttack (torchattacks 3.5: APGD-CE, APGD-T, FAB-T, Square)."""
    import torchattacks

    model.eval()
    attack = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=num_classes,
                                     seed=seed)
    adv = attack(x, y)
    return accuracy(model, adv, y)


# the adversarial attacks a classifier's robustness is measured under (not the language-model ATTACKS registry)
ROBUSTNESS_ATTACKS = ("fgsm", "pgd20", "pgd100", "cw100", "aa")
AA_MISSING = ("not computed: torchattacks is not installed (AutoAttack; `pip install --no-deps torchattacks`, "
              "or the obliviate[classifier] extra)")


def resolve_attacks(requested: list[str] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """(attacks to run, {attack: why not computed}), decided before any training.

    The default set drops AutoAttack when torchattacks is not installed (an optional extra), with the reason;
    an explicit `eval_attacks` naming `aa` is a setting the user gave, so it is an error instead."""
    import importlib.util

    from obliviate import ObliviateError

    attacks = tuple(requested or ROBUSTNESS_ATTACKS)
    if "aa" not in attacks or importlib.util.find_spec("torchattacks") is not None:
        return attacks, {}
    if requested:
        raise ObliviateError("eval_attacks includes aa (AutoAttack) but torchattacks is not installed: "
                             "pip install --no-deps torchattacks, or drop aa")
    return tuple(a for a in attacks if a != "aa"), {"aa": AA_MISSING}


def evaluate_robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, num_classes: int,
                        aa_n: int = 100, attacks: tuple[str, ...] = ROBUSTNESS_ATTACKS,
                        seed: int = 0) -> dict[str, float]:
    """{clean, fgsm, pgd20, pgd100, cw100, aa} accuracies; AA on the fixed subset x[:aa_n]."""
    out = {"clean": accuracy(model, x, y)}
    table = {"fgsm": dict(steps=1), "pgd20": dict(steps=20), "pgd100": dict(steps=100),
             "cw100": dict(steps=100, loss="cw")}
    for name in attacks:
        if name == "aa":
            if aa_n > 0:
                out["aa"] = autoattack_accuracy(model, x[:aa_n], y[:aa_n], eps=eps, num_classes=num_classes,
                                                seed=seed)
        else:
            out[name] = robust_accuracy(model, x, y, eps=eps, **table[name])
    return out
