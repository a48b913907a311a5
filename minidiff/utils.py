"""Small helpers every module may use: the device, seeding, the fast (test) mode, input checks.

This sits at the bottom of the package's layering: it imports nothing from minidiff.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

FAST_ENV = "MINIDIFF_FAST"


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's random generators; return a torch.Generator seeded the same way.

    On the CPU the same seed then gives the same samples on every run.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def bf16_is_fast(dev: torch.device | str | None = None) -> bool:
    """Whether bfloat16 autocast speeds things up here: CUDA GPUs with bf16, CPUs with native bf16 instructions
    (Intel AMX, or AVX512-BF16 as on AMD Zen 4 / Intel Cooper Lake).

    Elsewhere bf16 is emulated and often slower than fp32, so we detect instead of assuming.
    """
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                flags = f.read()
            return "amx_bf16" in flags or "avx512_bf16" in flags
        except OSError:
            return False
    return False


def fast_mode() -> bool:
    """True when the notebooks run under test (environment variable MINIDIFF_FAST=1).

    Fast mode only shrinks budgets (training steps, sample counts); no checked output may depend on it.
    """
    return os.environ.get(FAST_ENV, "0").strip().lower() not in ("", "0", "false", "no")


def check_image_batch(x: torch.Tensor, name: str = "x", channels: tuple[int, ...] = (1, 3)) -> torch.Tensor:
    """Return `x` as a (B, C, H, W) batch, accepting a single (C, H, W) image.

    Raises a ValueError that names the problem for anything else, e.g. a channels-last (H, W, C) array.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor in (B, C, H, W) layout, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(
            f"{name} must be an image batch (B, C, H, W) or one image (C, H, W); got shape {tuple(x.shape)}"
        )
    c = x.shape[1]
    if c not in channels:
        hint = ""
        if x.shape[-1] in channels:
            hint = " It looks channels-last (B, H, W, C): use x.permute(0, 3, 1, 2)."
        raise ValueError(
            f"{name} has {c} channels in dim 1, expected one of {channels} (layout B, C, H, W); "
            f"shape {tuple(x.shape)}.{hint}"
        )
    return x


def check_denoiser_input(model_name: str, x: torch.Tensor, t: torch.Tensor, channels: int, size: int) -> None:
    """The checks every image denoiser makes on model(x, t, ...): x is (B, channels, size, size), t is (B,)."""
    check_float_tensor("x", x)
    if x.ndim != 4 or x.shape[1:] != (channels, size, size):
        raise ValueError(f"{model_name} expects x of shape (B, {channels}, {size}, {size}), got {tuple(x.shape)}")
    check_time_tensor(t, x.shape[0])


def check_time_tensor(t: object, batch: int) -> None:
    """A denoiser's t: a tensor of shape (B,) of numbers (integer steps for DDPM, floats in [0, 1] for flow)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a tensor of shape ({batch},), got {type(t).__name__} {short(t)}")
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"t must hold numbers (integer steps or floats in [0, 1]), got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")


# ------------------------------------------------------------------------------------------ checks at the boundary


def short(value: object, limit: int = 80) -> str:
    """repr(value), cut to about `limit` characters (a 10,000-character prompt is not repeated whole in a message)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}...{text[-12:]} ({len(text)} characters)"


def check_number(name: str, value: object, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """`value` as a finite float within [low, high] (open ends if asked); a ValueError naming `name` otherwise.

    NaN and infinity are refused: they make samplers return all-NaN images and training loops run forever."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {short(value)}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    allowed = f"{lo}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{hi}"
    if (low is not None and (v < low or (low_open and v == low))) or \
            (high is not None and (v > high or (high_open and v == high))):
        raise ValueError(f"{name} must lie in {allowed}, got {v:g}")
    return v


def check_int(name: str, value: object, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int within [low, high]; a ValueError naming `name` for floats (2.7 is not silently 2), bools,
    strings or values out of range."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point \
            and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {short(value)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        span = f"{'' if low is None else low}..{'' if high is None else high}"
        raise ValueError(f"{name} must be an integer in {span}, got {v}")
    return v


def check_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    """A sampler's output shape: a tuple of positive integers, batch first (B >= 1)."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape or \
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"{name} must be a tuple of integers like (B, C, H, W), got {short(shape)}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"{name} {tuple(shape)} has a zero or negative size: every dimension (the batch size "
                         "first) must be at least 1")
    return tuple(int(s) for s in shape)


def check_float_tensor(name: str, x: object, finite: bool = False) -> torch.Tensor:
    """`x` must be a floating-point tensor (images are floats in [-1, 1], not 0..255 integers), non-empty, and
    finite if asked."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor (values in [-1, 1]), got dtype {x.dtype}; "
                         "convert integer images with x.float() / 127.5 - 1")
    if x.ndim >= 1 and x.shape[0] == 0:
        raise ValueError(f"{name} has batch size 0 (shape {tuple(x.shape)}): pass at least one sample")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x
