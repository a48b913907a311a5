"""Datasets that ship with installed packages, so nothing downloads.

- `load_digits`: scikit-learn's 1,797 real 8x8 handwritten digits, upsampled, in [-1, 1], with labels.
- `load_photo`: a real photograph that matplotlib ships (Grace Hopper), cropped square, in [-1, 1].
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

DIGIT_SIZES = (8, 16, 32)
DIGIT_SPLITS = ("all", "train", "reference")


def digit_split_indices(n_total: int = 1797, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random split of the digits: (train indices, reference indices), half each, disjoint.

    Generators train on "train"; the benchmarks compare their samples with the held-out "reference" half, so a model
    that merely memorised its training digits scores the real-vs-real floor, not better.
    """
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    half = n_total // 2
    return perm[half:].sort().values, perm[:half].sort().values


def load_digits(size: int = 16, split: str = "all") -> tuple[torch.Tensor, torch.Tensor]:
    """The sklearn digits as images (N, 1, size, size) in [-1, 1] (float32) and labels (N,) (long, 0..9).

    The 8x8 originals hold ink levels 0..16; they are scaled to [-1, 1] (background -1) and, for size 16 or 32,
    upsampled bilinearly. split: "all" (N = 1,797, sklearn's fixed order), "train" (899) or "reference" (898),
    see `digit_split_indices`.
    """
    if size not in DIGIT_SIZES:
        raise ValueError(f"size must be one of {DIGIT_SIZES} (8x8 originals upsampled), got {size!r}")
    if split not in DIGIT_SPLITS:
        raise ValueError(f"split must be one of {DIGIT_SPLITS}, got {split!r}")
    from sklearn.datasets import load_digits as _sk_load_digits

    d = _sk_load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x * 2 - 1).clamp(-1, 1)
    y = torch.from_numpy(d.target.astype(np.int64))
    if split != "all":
        train_idx, ref_idx = digit_split_indices(len(y))
        idx = train_idx if split == "train" else ref_idx
        x, y = x[idx], y[idx]
    return x.contiguous(), y


def photo_path() -> str:
    """Path of the photograph matplotlib ships in its sample data (grace_hopper.jpg)."""
    import matplotlib

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"matplotlib's sample photo is missing at {path}; reinstall matplotlib (pip install --force-reinstall "
            "matplotlib) or pass your own image to the lesson"
        )
    return path


def load_photo(size: int = 64, gray: bool = False) -> torch.Tensor:
    """A real photo as one image (C, size, size) in [-1, 1]: centre-cropped square, resized; C = 3, or 1 if gray."""
    if isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 512:
        raise ValueError(f"size must be an int between 4 and 512, got {size!r}")
    from PIL import Image

    img = Image.open(photo_path()).convert("L" if gray else "RGB")
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    x = torch.from_numpy(arr)
    x = x.unsqueeze(0) if gray else x.permute(2, 0, 1)
    return (x * 2 - 1).clamp(-1, 1).contiguous()


TOYS = ("moons", "spiral", "checkerboard", "gaussians")


def make_toy(name: str, n: int, seed: int = 0) -> torch.Tensor:
    """n points (n, 2) from a 2-D toy distribution, scaled to roughly unit standard deviation.

    moons: two interleaved half circles; spiral: one noisy spiral arm; checkerboard: uniform on the black squares of
    a 4x4 board; gaussians: a mixture of 8 small Gaussians on a circle.
    """
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; choose one of {TOYS}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    if name == "moons":
        a = torch.rand(n, generator=g) * np.pi
        upper = torch.rand(n, generator=g) < 0.5
        x = torch.where(upper, torch.cos(a), 1 - torch.cos(a))
        y = torch.where(upper, torch.sin(a), 0.5 - torch.sin(a))
        pts = torch.stack([x - 0.5, y - 0.25], 1) + 0.06 * torch.randn(n, 2, generator=g)
        return pts / 0.7
    if name == "spiral":
        r = torch.sqrt(torch.rand(n, generator=g)) * 3 * np.pi
        pts = torch.stack([r * torch.cos(r), r * torch.sin(r)], 1) / 5
        return pts + 0.08 * torch.randn(n, 2, generator=g)
    if name == "checkerboard":
        u = torch.rand(n, 2, generator=g) * 4
        cell = u.floor().long()
        flip = (cell.sum(1) % 2 == 1)
        u[flip, 0] = (u[flip, 0] + 1) % 4  # move points on white squares one square to the right
        return (u - 2) / 1.15
    k = torch.randint(0, 8, (n,), generator=g)
    ang = k.float() * (2 * np.pi / 8)
    centres = torch.stack([torch.cos(ang), torch.sin(ang)], 1) * 1.4
    return centres + 0.12 * torch.randn(n, 2, generator=g)
