"""Input checks, in one place: every public entry of the package (a sampler, a formula a learner calls, a model's
forward, the pipeline, the training loop) checks its arguments here once, so the code after the check is the idea
alone. Each check raises a ValueError that says what was wrong and what to do.

Base layer of the package: imports nothing from minidiff.
"""

from __future__ import annotations

import numpy as np
import torch


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


def check_flow_t(t: object, batch: int) -> torch.Tensor:
    """Flow matching's t: a float tensor of shape (B,) with every value in [0, 1] (t = 1 is pure noise). DDPM's
    integer steps (e.g. 500) are refused rather than extrapolated."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a float tensor of shape ({batch},) with values in [0, 1], got "
                         f"{type(t).__name__} {short(t)}")
    if not t.dtype.is_floating_point:
        raise ValueError(f"t must be a float tensor with values in [0, 1] (flow matching's continuous time), got "
                         f"dtype {t.dtype}; DDPM's integer steps belong to ddpm.q_sample")
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    if t.numel() and not bool(((t >= 0) & (t <= 1)).all()):
        bad = t[~((t >= 0) & (t <= 1))][0]
        raise ValueError(f"t must lie in [0, 1] (0 = data, 1 = noise), got {float(bad):g}")
    return t


def check_grid(timesteps: object, increasing: bool = False) -> torch.Tensor:
    """A flow sampler's own time grid: a decreasing sequence of at least 2 points in [0, 1] (an increasing one with
    `increasing`, for inversion), as float64."""
    ts = torch.as_tensor(timesteps, dtype=torch.float64).flatten()
    way = "an increasing" if increasing else "a decreasing"
    monotone = (ts[1:] > ts[:-1]) if increasing else (ts[1:] < ts[:-1])
    if len(ts) < 2 or not bool(monotone.all()) or float(ts.min()) < 0 or float(ts.max()) > 1:
        raise ValueError(f"timesteps must be {way} grid of at least 2 points in [0, 1], got "
                         f"{ts.tolist()[:6]}{' ...' if len(ts) > 6 else ''}")
    return ts


def check_ddpm_t(t: object, batch: int, T: int, device: torch.device) -> torch.Tensor:
    """DDPM's t: integer timesteps in 0..T-1 as a long tensor of shape (batch,), from one int or a tensor: a float t
    (2.7) is refused, not truncated, and t = -1 is refused, not read as T-1 by negative indexing. An int is checked
    without reading anything back from the device; a tensor's range check reads its min and max (one sync)."""
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        if not 0 <= t < T:
            raise ValueError(f"timestep {t} is out of range for a schedule with T={T} steps (valid: 0..{T - 1})")
        return torch.full((batch,), int(t), dtype=torch.long, device=device)
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be an int or an integer tensor of shape (B,), got {type(t).__name__} {short(t)}")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"t must hold integer timesteps 0..{T - 1} (dtype long), got dtype {t.dtype}"
                         + (" (DDPM's t is a step index; flow matching's t in [0, 1] goes to flow.*)"
                            if t.dtype.is_floating_point else ""))
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"t must have shape (B,) = ({batch},) to match x's batch, got {tuple(t.shape)}")
    low, high = torch.stack((t.min(), t.max())).tolist()
    if low < 0 or high >= T:
        bad = low if low < 0 else high
        raise ValueError(f"timestep {bad} is out of range for a schedule with T={T} steps (valid: 0..{T - 1})")
    return t.long().to(device)


def check_like(name: str, value: object, ref: torch.Tensor, ref_name: str = "x_t", hint: str = "") -> torch.Tensor:
    """`value` must be a float tensor with `ref`'s shape (no silent broadcasting of a batch of 1 over a batch of 4)."""
    if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{name} must have {ref_name}'s shape {tuple(ref.shape)}, got {got}{hint}")
    return check_float_tensor(name, value)


def check_batch(name: str, x: object) -> torch.Tensor:
    """A batch of data: a float tensor (B, ...) with at least a batch and one more dimension."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a batched tensor (B, C, H, W) (or (B, C, T, H, W)); got {got}")
    return check_float_tensor(name, x)


def check_labels(y: object, num_classes: int, batch: int | None = None) -> torch.Tensor:
    """Class labels: an integer tensor of shape (batch,) with values in 0..num_classes (num_classes = the null label
    of classifier-free guidance). The range check reads the min and max back in one go (one device sync)."""
    if not isinstance(y, torch.Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got "
                         f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}")
    if batch is not None and tuple(y.shape) != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(y.shape)}")
    if y.numel():
        low, high = torch.stack((y.min(), y.max())).tolist()
        if low < 0 or high > num_classes:
            raise ValueError(f"labels must lie in 0..{num_classes - 1} ({num_classes} = the null label), "
                             f"got values {low}..{high}")
    return y


def check_mask(mask: object, ref: torch.Tensor) -> torch.Tensor:
    """An editing mask: 0 (fill) or 1 (keep) everywhere, with `ref`'s shape or broadcastable to it; returned expanded
    to `ref`'s shape, in its dtype."""
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"mask must be a tensor of 0s (fill) and 1s (keep) with the image's shape {tuple(ref.shape)}, "
                         f"got {type(mask).__name__}")
    try:
        mask = mask.expand_as(ref)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit the image's shape {tuple(ref.shape)} "
                         "(give the same shape, or one that broadcasts to it, e.g. (1, 1, H, W))") from None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold 0 (fill) or 1 (keep) only")
    return mask.to(ref.dtype)
