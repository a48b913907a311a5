"""Datasets that ship with installed packages, so nothing downloads.

- `load_digits`: scikit-learn's 1,797 real 8x8 handwritten digits, upsampled, in [-1, 1], with labels.
- `load_photo`: a real photograph that matplotlib ships (Grace Hopper), cropped square, in [-1, 1].
- `make_toy`: 2-D toy distributions (lesson 04).
- `moving_digits`: captioned videos of a tinted digit moving across a black canvas (lessons 06-08).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_int

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


# ------------------------------------------------------------------------------------------------- moving digits

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.15, 0.15),
    "green": (0.15, 1.0, 0.15),
    "blue": (0.3, 0.4, 1.0),
    "yellow": (1.0, 1.0, 0.15),
    "cyan": (0.15, 1.0, 1.0),
    "magenta": (1.0, 0.2, 1.0),
}
COLOUR_NAMES = tuple(COLOURS)
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (dy, dx)
DIRECTION_NAMES = tuple(DIRECTIONS)
# (digit, colour index, direction index) combinations never generated for training: every digit, colour and direction
# appears in training, but these pairings do not (to measure compositional generalisation).
HELDOUT_COMBOS = frozenset((d, (d + 1) % len(COLOUR_NAMES), d % len(DIRECTION_NAMES)) for d in range(10))
VIDEO_SPLITS = ("train", "heldout")


@dataclass
class MovingDigits:
    """videos (N, 3, T, H, W) in [-1, 1]; captions; ground-truth attributes as indices (digit 0-9, colour index into
    COLOUR_NAMES, direction index into DIRECTION_NAMES)."""

    videos: torch.Tensor
    captions: list[str]
    digits: torch.Tensor
    colours: torch.Tensor
    directions: torch.Tensor

    def __len__(self) -> int:
        return len(self.captions)


def caption(digit: int, colour: int, direction: int) -> str:
    """The caption grammar: "a <colour> <digit> moving <direction>", e.g. "a red 3 moving left"."""
    digit = check_int("digit", digit, 0, 9)
    colour = check_int("colour", colour, 0, len(COLOUR_NAMES) - 1)
    direction = check_int("direction", direction, 0, len(DIRECTION_NAMES) - 1)
    return f"a {COLOUR_NAMES[colour]} {digit} moving {DIRECTION_NAMES[direction]}"


def caption_index(digits: torch.Tensor, colours: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """The index of each (digit, colour, direction) among all captions, ordered digit, then colour, then direction:
    digit * 24 + colour * 4 + direction (caption_table lists them in this order)."""
    for name, v, n in (("digits", digits, 10), ("colours", colours, len(COLOUR_NAMES)),
                       ("directions", directions, len(DIRECTION_NAMES))):
        if not isinstance(v, torch.Tensor) or v.dtype.is_floating_point or v.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got "
                             f"{v.dtype if isinstance(v, torch.Tensor) else type(v).__name__}")
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= n):
            raise ValueError(f"{name} must lie in 0..{n - 1}, got values {int(v.min())}..{int(v.max())}")
    return (digits * len(COLOUR_NAMES) + colours) * len(DIRECTION_NAMES) + directions


def caption_attributes(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of caption_index: (digits, colours, directions)."""
    per_digit = len(COLOUR_NAMES) * len(DIRECTION_NAMES)
    return index // per_digit, (index // len(DIRECTION_NAMES)) % len(COLOUR_NAMES), index % len(DIRECTION_NAMES)


def caption_table() -> list[str]:
    """All 240 captions, in the order of caption_index (digit * 24 + colour * 4 + direction)."""
    return [caption(d, c, m) for d in range(10) for c in range(len(COLOUR_NAMES)) for m in range(len(DIRECTION_NAMES))]


def caption_words() -> list[str]:
    """Every word the caption grammar uses: the vocabulary of the text encoder."""
    return ["a", "moving", *[str(d) for d in range(10)], *COLOUR_NAMES, *DIRECTION_NAMES]


def _allowed_combos(split: str) -> torch.Tensor:
    combos = [(d, c, m) for d in range(10) for c in range(len(COLOUR_NAMES)) for m in range(len(DIRECTION_NAMES))]
    keep = [x for x in combos if (x in HELDOUT_COMBOS) == (split == "heldout")]
    return torch.tensor(keep, dtype=torch.long)


def moving_digits(n: int, seed: int = 0, split: str = "train", frames: int = 9, size: int = 32,
                  glyph_size: int = 12, speed: int = 2) -> MovingDigits:
    """n captioned videos, a deterministic function of (n, seed, split, ...), generated vectorised (fast).

    Each video: a digit glyph (an sklearn digit upsampled to glyph_size, from the digits' train half for split
    "train" and the reference half for "heldout"), tinted one of COLOURS, moving `speed` pixels per frame in one of
    DIRECTIONS across a black size x size canvas, `frames` frames (9 = 4k + 1 suits a causal VAE). Split "train"
    never contains a HELDOUT_COMBOS combination; split "heldout" contains only those.
    """
    if split not in VIDEO_SPLITS:
        raise ValueError(f"split must be one of {VIDEO_SPLITS}, got {split!r}")
    for name, v in (("n", n), ("frames", frames), ("size", size), ("glyph_size", glyph_size), ("speed", speed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "speed" else 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    travel = speed * (frames - 1)
    if glyph_size + travel > size:
        raise ValueError(f"a {glyph_size}-pixel glyph moving {travel} pixels does not fit a {size}-pixel canvas: "
                         "use fewer frames, a lower speed or a bigger canvas")
    g = torch.Generator().manual_seed(seed)
    allowed = _allowed_combos(split)
    combo = allowed[torch.randint(len(allowed), (n,), generator=g)]
    digit, colour, direction = combo.unbind(1)

    x8, y8 = load_digits(8, split="train" if split == "train" else "reference")
    glyphs_all = F.interpolate((x8 + 1) / 2, size=(glyph_size, glyph_size), mode="bilinear", align_corners=False)
    pick = torch.empty(n, dtype=torch.long)
    r = torch.randint(1 << 30, (n,), generator=g)
    for d in range(10):
        pool = (y8 == d).nonzero().squeeze(1)
        sel = digit == d
        pick[sel] = pool[r[sel] % len(pool)]
    glyph = glyphs_all[pick, 0].clamp(0, 1)  # (n, G, G) ink in [0, 1]

    dydx = torch.tensor(list(DIRECTIONS.values()))[direction]  # (n, 2)
    free = size - glyph_size
    start = torch.randint(free + 1, (n, 2), generator=g)
    # along the motion axis, start where the whole path stays on the canvas
    lo = torch.where(dydx < 0, torch.full_like(start, travel), torch.zeros_like(start))
    hi = torch.where(dydx > 0, torch.full_like(start, free - travel), torch.full_like(start, free))
    start = torch.where(dydx != 0, lo + start % (hi - lo + 1), start)
    steps = torch.arange(frames) * speed
    ys = start[:, 0, None] + dydx[:, 0, None] * steps  # (n, T)
    xs = start[:, 1, None] + dydx[:, 1, None] * steps
    ar = torch.arange(glyph_size)
    rows = ys[:, :, None, None] + ar[None, None, :, None]
    cols = xs[:, :, None, None] + ar[None, None, None, :]
    canvas = torch.zeros(n, frames, size, size)
    canvas[torch.arange(n)[:, None, None, None], torch.arange(frames)[None, :, None, None], rows, cols] = \
        glyph[:, None].expand(n, frames, glyph_size, glyph_size)
    tint = torch.tensor(list(COLOURS.values()))[colour]  # (n, 3)
    videos = canvas[:, None] * tint[:, :, None, None, None] * 2 - 1
    captions = [caption(int(d), int(c), int(m)) for d, c, m in combo.tolist()]
    return MovingDigits(videos.contiguous(), captions, digit, colour, direction)


def retint(videos: torch.Tensor, rgb: tuple[float, float, float]) -> torch.Tensor:
    """The same moving-digit videos (N, 3, T, H, W) in another tint: each pixel's ink (its brightest channel) times
    `rgb` (each in [0, 1]), e.g. (1, 1, 1) for white, a colour no caption of the training data has (lesson 09)."""
    if not isinstance(videos, torch.Tensor) or videos.ndim != 5 or videos.shape[1] != 3:
        raise ValueError(f"videos must be a tensor (N, 3, T, H, W), got {tuple(getattr(videos, 'shape', ()))}")
    tint = torch.as_tensor(rgb, dtype=videos.dtype)
    if tint.shape != (3,) or bool(((tint < 0) | (tint > 1)).any()):
        raise ValueError(f"rgb must be three numbers in [0, 1], got {rgb!r}")
    ink = ((videos + 1) / 2).amax(dim=1, keepdim=True)
    return ink * tint.to(videos.device)[None, :, None, None, None] * 2 - 1
