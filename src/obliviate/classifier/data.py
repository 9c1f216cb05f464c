"""Image data for the classifier attacks: offline datasets, splits, the shifted public set, augmentations.

Images are float tensors (N, C, H, W) in [0, 1]; labels are int64 (N,). Everything draws from
torch's global RNG, so a run seeded once with `torch.manual_seed` is deterministic on CPU.
Augmentations are a few lines of torch (`affine_grid` + `grid_sample`), no torchvision/kornia.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from obliviate import ObliviateError

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/dataset-fashion-mnist")
FASHION_HINT = "apt-get install -y dataset-fashion-mnist"


@dataclass
class ImageData:
    """x (N, C, H, W) in [0, 1]; y (N,) int64 in [0, num_classes)."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: torch.Tensor) -> "ImageData":
        return ImageData(self.x[idx], self.y[idx], self.num_classes, self.name)

    def to(self, device: torch.device | str) -> "ImageData":
        """The same images and labels on `device` (the run's device: `models.device.resolve_device`)."""
        return ImageData(self.x.to(device), self.y.to(device), self.num_classes, self.name)


def load_digits() -> ImageData:
    """scikit-learn's 1,797 8×8 handwritten digits, pixel values 0..16 scaled to [0, 1]."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return ImageData(x, torch.tensor(d.target, dtype=torch.int64), 10, "digits")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_fashion_file(stem: str) -> Path:
    for d in FASHION_DIRS:
        for p in sorted(Path(d).glob(f"**/{stem}*")) if Path(d).exists() else []:
            return p
    raise ObliviateError(f"Fashion-MNIST file {stem} not found under {', '.join(FASHION_DIRS)}; "
                         f"install it with: {FASHION_HINT}")


def load_fashion_mnist(max_items: int | None = 12000) -> ImageData:
    """Debian `dataset-fashion-mnist` (28×28, 10 classes); train+test pooled, first `max_items` kept."""
    xs, ys = [], []
    for part in ("train", "t10k"):
        xs.append(_read_idx(_find_fashion_file(f"{part}-images-idx3-ubyte")))
        ys.append(_read_idx(_find_fashion_file(f"{part}-labels-idx1-ubyte")))
    x = torch.tensor(np.concatenate(xs), dtype=torch.float32).unsqueeze(1) / 255.0
    y = torch.tensor(np.concatenate(ys), dtype=torch.int64)
    if max_items:
        x, y = x[:max_items], y[:max_items]
    return ImageData(x, y, 10, "fashion-mnist")


DATASETS = {"digits": load_digits, "fashion-mnist": load_fashion_mnist}


def load_dataset(name: str) -> ImageData:
    if name not in DATASETS:
        raise ObliviateError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]()


def split(data: ImageData, fractions: list[float], *, seed: int) -> list[ImageData]:
    """Disjoint random parts with the given fractions (the last part takes the remainder)."""
    if not fractions or any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ObliviateError(f"split fractions {fractions} must be positive and sum to at most 1")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for i, f in enumerate(fractions):
        end = len(data) if i == len(fractions) - 1 and sum(fractions) > 1 - 1e-9 else start + int(round(f * len(data)))
        parts.append(data.subset(perm[start:end]))
        start = end
    return parts


# --------------------------------------------------------------------------- augmentations

def _affine(x: torch.Tensor, angle_deg: torch.Tensor, scale: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor,
            flip: torch.Tensor) -> torch.Tensor:
    """Per-sample affine warp. `scale` < 1 zooms in (crop-resize to a `scale`-wide window).

    All parameters have shape (N,); `flip` is ±1 (−1 mirrors horizontally).
    """
    a = angle_deg * math.pi / 180
    cos, sin = torch.cos(a) * scale, torch.sin(a) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], -1), torch.stack([sin * flip, cos, ty], -1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_flip(x: torch.Tensor, *, pad: int = 1) -> torch.Tensor:
    """A = random crop with zero padding `pad` + horizontal flip (DFHL-RS generator stage), per sample."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,))  # host-side offsets: read back as Python ints to slice
    dx = torch.randint(0, 2 * pad + 1, (n,))
    out = _crop(padded, dy, dx, h, w)
    flip = torch.rand(n, device=x.device) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.stack([padded[i, :, int(dy[i]): int(dy[i]) + h, int(dx[i]): int(dx[i]) + w] for i in range(len(dy))])


def strong_augment(x: torch.Tensor) -> torch.Tensor:
    """DFHL-RS clone-stage augmentation, drawn ONCE for the whole batch: crop-resize 95–100 %,
    Gaussian noise σ = 0.001, horizontal flip, rotation ∈ {−15°, 0°, 15°}."""
    n, dev = len(x), x.device
    area = 0.95 + 0.05 * torch.rand((), device=dev)
    side = area.sqrt()
    tx, ty = (torch.rand(2, device=dev) * 2 - 1) * (1 - side)
    angle = 15.0 * (torch.randint(0, 3, (), device=dev) - 1)   # one of −15°, 0°, 15°
    flip = torch.where(torch.rand((), device=dev) < 0.5, -1.0, 1.0)
    one = torch.ones(n, device=dev)
    out = _affine(x, angle * one, side * one, tx * one, ty * one, flip * one)
    return (out + 0.001 * torch.randn_like(out)).clamp(0, 1)


def random_augment(x: torch.Tensor, *, max_angle: float = 10.0, flip: bool = True) -> torch.Tensor:
    """PLG-MI augmentation A, independent per sample: random resized crop (area 0.8–1), colour jitter
    (brightness/contrast ±20 %), horizontal flip, rotation ±`max_angle`°. Differentiable in x."""
    n, dev = len(x), x.device
    side = (0.8 + 0.2 * torch.rand(n, device=dev)).sqrt()
    tx, ty = (torch.rand(2, n, device=dev) * 2 - 1) * (1 - side)
    angle = (torch.rand(n, device=dev) * 2 - 1) * max_angle
    mirror = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=dev)
    out = _affine(x, angle, side, tx, ty, mirror)
    bright = (0.8 + 0.4 * torch.rand(n, 1, 1, 1, device=dev))
    contrast = (0.8 + 0.4 * torch.rand(n, 1, 1, 1, device=dev))
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean * bright).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur with a (2⌈2σ⌉+1)-tap kernel, zero padding."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)


PUBLIC_SHIFTS = ("rotate-blur", "inverted", "none")


def shift_public(x: torch.Tensor, *, kind: str = "rotate-blur", max_angle: float = 40.0, blur: float = 0.6,
                 seed: int = 0) -> torch.Tensor:
    """The attacker's public data, distribution-shifted: `rotate-blur` (random rotation ±`max_angle`°, then
    Gaussian blur σ=`blur`), `inverted` (that, then 1 − x: a strong shift), or `none`. Labels are dropped
    by the caller; PLG-MI only sees these images."""
    if kind not in PUBLIC_SHIFTS:
        raise ObliviateError(f"unknown public shift {kind!r}; choose one of {', '.join(PUBLIC_SHIFTS)}")
    if kind == "none":
        return x.clone()
    g = torch.Generator(device=x.device).manual_seed(seed)
    n, dev = len(x), x.device
    angle = (torch.rand(n, generator=g, device=dev) * 2 - 1) * max_angle
    one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
    out = _affine(x, angle, one, zero, zero, one)
    out = gaussian_blur(out, blur).clamp(0, 1) if blur > 0 else out.clamp(0, 1)
    return 1 - out if kind == "inverted" else out
