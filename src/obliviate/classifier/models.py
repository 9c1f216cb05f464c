"""Small plain-torch networks for the classifier attacks, and safetensors checkpoints.

Classifiers: `cnn` (target / clone) and `evalnet` (PLG-MI's evaluation classifier: a different
architecture). Generators: `Generator` (DFHL-RS, unconditional; GMI baseline) and `CondGenerator`
(PLG-MI, conditional BatchNorm). `ProjectionDiscriminator`: spectral-norm projection discriminator
(Miyato & Koyama 2018). A checkpoint is `model.safetensors` + `model.json` (architecture); pickles
are refused unless the caller opts in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from obliviate import ObliviateError
from obliviate.reader import read_json_object

if TYPE_CHECKING:
    from obliviate.classifier.data import ImageData


class CNN(nn.Module):
    """conv(w)-conv(2w)-pool-conv(2w)-pool-fc(4w)-fc(K), BatchNorm + ReLU after each conv. `features` returns the penultimate layer."""

    def __init__(self, in_ch: int = 1, size: int = 8, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (size // 4) ** 2, 4 * width), nn.ReLU())
        self.head = nn.Linear(4 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class EvalNet(nn.Module):
    """A different architecture for the evaluation classifier: 5×5 convs, ELU, avg-pool, one hidden fc."""

    def __init__(self, in_ch: int = 1, size: int = 8, num_classes: int = 10, width: int = 24):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, width, 5, padding=2), nn.ELU(),
            nn.Conv2d(width, width, 5, padding=2), nn.ELU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(width * (size // 2) ** 2, 2 * width), nn.ELU())
        self.head = nn.Linear(2 * width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


CLASSIFIERS = {"cnn": CNN, "evalnet": EvalNet}


def build_classifier(arch: str, **kw) -> nn.Module:
    if arch not in CLASSIFIERS:
        raise ObliviateError(f"unknown classifier architecture {arch!r}; choose one of {', '.join(CLASSIFIERS)}")
    return CLASSIFIERS[arch](**kw)


class Generator(nn.Module):
    """z (N, nz) → image (N, C, S, S) in [0, 1]: fc → BN → 2× (upsample, conv, BN, LeakyReLU) → conv → sigmoid."""

    def __init__(self, nz: int = 64, out_ch: int = 1, size: int = 8, width: int = 64):
        super().__init__()
        self.init, self.width = size // 4, width
        self.fc = nn.Linear(nz, 2 * width * self.init ** 2)
        self.bn0 = nn.BatchNorm2d(2 * width)
        self.conv1 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2 * width)
        self.conv2 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.bn0(self.fc(z).view(len(z), 2 * self.width, self.init, self.init))
        h = F.leaky_relu(self.bn1(self.conv1(F.interpolate(h, scale_factor=2))), 0.2)
        h = F.leaky_relu(self.bn2(self.conv2(F.interpolate(h, scale_factor=2))), 0.2)
        return torch.sigmoid(self.out(h))


class CondBatchNorm2d(nn.Module):
    """Conditional BatchNorm: BN without affine, then per-class γ_c, β_c (γ initialised to 1, β to 0)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.gamma(y)[:, :, None, None] * self.bn(x) + self.beta(y)[:, :, None, None]


class CondGenerator(nn.Module):
    """G(z, c): the `Generator` layout with every BatchNorm replaced by conditional BatchNorm."""

    def __init__(self, nz: int = 64, num_classes: int = 10, out_ch: int = 1, size: int = 8, width: int = 64):
        super().__init__()
        self.init, self.width, self.nz, self.num_classes = size // 4, width, nz, num_classes
        self.fc = nn.Linear(nz, 2 * width * self.init ** 2)
        self.bn0 = CondBatchNorm2d(2 * width, num_classes)
        self.conv1 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.bn1 = CondBatchNorm2d(2 * width, num_classes)
        self.conv2 = nn.Conv2d(2 * width, width, 3, padding=1)
        self.bn2 = CondBatchNorm2d(width, num_classes)
        self.out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.fc(z).view(len(z), 2 * self.width, self.init, self.init), y))
        h = F.relu(self.bn1(self.conv1(F.interpolate(h, scale_factor=2)), y))
        h = F.relu(self.bn2(self.conv2(F.interpolate(h, scale_factor=2)), y))
        return torch.sigmoid(self.out(h))


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩, every layer spectrally normalised; `num_classes=0` → unconditional."""

    def __init__(self, in_ch: int = 1, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.phi = nn.Sequential(
            spectral_norm(nn.Conv2d(in_ch, width, 3, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)), nn.LeakyReLU(0.1),
            spectral_norm(nn.Conv2d(2 * width, 2 * width, 3, padding=1)), nn.LeakyReLU(0.1))
        self.psi = spectral_norm(nn.Linear(2 * width, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, 2 * width)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.phi(x).sum(dim=(2, 3))
        out = self.psi(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(1)
        return out


# --------------------------------------------------------------------------- checkpoints

def save_classifier(model: nn.Module, out_dir: str | Path, *, arch: str, meta: dict | None = None) -> Path:
    """Write `model.safetensors` + `model.json` ({arch, kwargs, meta}) into `out_dir`."""
    from safetensors.torch import save_file

    from obliviate.rundir import atomic_file, write_json

    out = Path(out_dir)
    with atomic_file(out / "model.safetensors") as tmp:  # never half a checkpoint; mode per umask (not mkstemp's 600)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    kwargs = dict(model.init_kwargs) if hasattr(model, "init_kwargs") else {}
    write_json(out / "model.json", {"arch": arch, "kwargs": kwargs, "meta": meta or {}})
    return out


def new_classifier(arch: str, **kwargs) -> nn.Module:
    """Build a classifier and remember its constructor kwargs for `save_classifier`."""
    model = build_classifier(arch, **kwargs)
    model.init_kwargs = dict(kwargs)
    return model


def load_classifier(model_dir: str | Path, *, allow_pickle: bool = False) -> tuple[nn.Module, dict]:
    """Load a classifier saved by `save_classifier`; returns (model in eval mode, model.json dict).

    A directory holding only a pickle (`model.pt`) is refused unless `allow_pickle=True` (the `--allow-pickle`
    flag); even then it is read with `torch.load(weights_only=True)` first and fully unpickled only if needed."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ObliviateError(f"{d}: model directory not found")
    spec_path, weights = d / "model.json", d / "model.safetensors"
    if not weights.exists():
        pickles = sorted(d.glob("*.pt")) + sorted(d.glob("*.pth"))
        if pickles and not allow_pickle:
            raise ObliviateError(f"{pickles[0]}: pickle checkpoints are refused (they can run code); "
                                 "re-save with safetensors or pass --allow-pickle")
        if not pickles:
            raise ObliviateError(f"{d}: no model.safetensors")
    if not spec_path.exists():
        raise ObliviateError(f"{d}: no model.json describing the architecture")
    spec = read_json_object(spec_path)
    if not isinstance(spec.get("arch"), str) or not isinstance(spec.get("kwargs", {}), dict):
        raise ObliviateError(f"{spec_path}: expected {{\"arch\": <name>, \"kwargs\": {{...}}}}, got keys "
                             f"{', '.join(map(str, spec)) or 'none'}")
    model = new_classifier(spec["arch"], **spec.get("kwargs", {}))
    if weights.exists():
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        try:
            state = torch.load(pickles[0], map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001  not plain tensors: full unpickling, which the user opted into
            state = torch.load(pickles[0], map_location="cpu", weights_only=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ObliviateError(f"{d}: weights do not match model.json ({str(e).splitlines()[0]})") from None
    return model.eval(), spec


def load_target(model_dir: str | Path, data: ImageData, *, dataset: str,
                allow_pickle: bool = False) -> tuple[nn.Module, dict]:
    """Load a saved target classifier (`--target`) and check that it fits `data`: the dataset its model.json
    records, the image shape it accepts and its number of outputs. Returns (model in eval mode on the device of
    `data`, model.json dict)."""
    model, spec = load_classifier(model_dir, allow_pickle=allow_pickle)
    model.to(data.x.device)
    meta = spec.get("meta", {})
    if meta.get("dataset") not in (None, dataset):
        raise ObliviateError(f"{model_dir}: target was trained on {meta['dataset']!r}, not {dataset!r}")
    try:
        with torch.no_grad():
            out = model(data.x[:2])
    except RuntimeError:
        shape = tuple(data.x.shape[1:])
        raise ObliviateError(f"{model_dir}: target does not accept {dataset} images of shape {shape}") from None
    if out.shape[1] != data.num_classes:
        raise ObliviateError(f"{model_dir}: target has {out.shape[1]} outputs, dataset has {data.num_classes} classes")
    return model, spec
