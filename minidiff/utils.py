"""Small helpers every module may use: the device, seeding, the fast (test) mode (input checks: `checks`).

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


def check_device(name: str | None) -> torch.device:
    """The --device to train on: None = the best available (CUDA, then MPS, then the CPU); a device that is not there
    is an error that says what is."""
    if name is None or name == "auto":
        return device()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False; a "
                         "CPU-only torch build, or no driver); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices (0-based)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: minidiff trains on cpu, cuda or mps")
    return dev
