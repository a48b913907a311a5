"""What every exercise check shares: the CheckFailed error, calling the learner's function safely, comparing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class CheckFailed(AssertionError):
    """An exercise check found a wrong answer. The message says what was expected and gives a hint."""


def call(fn: Callable, name: str, *args: Any) -> Any:
    if not callable(fn):
        raise CheckFailed(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        return fn(*args)
    except NotImplementedError as e:
        if str(e):  # torch's own NotImplementedError (an op missing for a dtype or device) carries a message
            raise CheckFailed(f"{name} raised NotImplementedError from inside torch: {str(e)[:300]}") from None
        frame = e.__traceback__
        while frame.tb_next is not None:
            frame = frame.tb_next
        where = frame.tb_frame.f_code.co_name  # the function whose body is still `raise NotImplementedError()`
        if where != getattr(fn, "__name__", where) and where.isidentifier():
            raise CheckFailed(
                f"{name} calls `{where}`, which is still the stub: solve that exercise first (or call the package's "
                "version), then run this cell again."
            ) from None
        raise CheckFailed(
            f"{name} is still the stub: replace `raise NotImplementedError()` with your code, then run this cell again."
        ) from None
    except Exception as e:  # the learner's code crashed: say so clearly, without a deep traceback
        raise CheckFailed(f"{name} raised {type(e).__name__}: {e}") from None


def as_tensor(out: Any, name: str, expected_shape: tuple[int, ...], floating: bool = True) -> torch.Tensor:
    """The learner's output as a float64 CPU tensor, after checking its type, shape and dtype (a float16 answer
    fails on its dtype, not with a misleading "wrong formula")."""
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{name} should return a torch.Tensor, got {type(out).__name__} {repr(out)[:60]}")
    if tuple(out.shape) != tuple(expected_shape):
        raise CheckFailed(f"{name} returned shape {tuple(out.shape)}, expected {tuple(expected_shape)}")
    if floating and out.dtype not in (torch.float32, torch.float64):
        raise CheckFailed(f"{name} returned dtype {out.dtype}; compute in float32 like the inputs (half precision "
                          "rounds away the digits this check compares)"
                          if out.dtype.is_floating_point else
                          f"{name} returned dtype {out.dtype}, expected a float32 tensor")
    if not floating and (out.dtype.is_floating_point or out.dtype == torch.bool):
        raise CheckFailed(f"{name} returned dtype {out.dtype}, expected an integer tensor (dtype long)")
    return out.detach().cpu().double()


def as_int_list(out: Any, name: str) -> list[int]:
    """The learner's output as a list of Python ints (from a list, a tuple or a 1-D integer tensor), or CheckFailed."""
    if isinstance(out, torch.Tensor):
        if out.ndim != 1 or out.dtype.is_floating_point:
            raise CheckFailed(f"{name} should return a list of integers, got a tensor of shape {tuple(out.shape)} "
                              f"and dtype {out.dtype}")
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise CheckFailed(f"{name} should return a list of integers, got {type(out).__name__} {repr(out)[:60]}")
    bad = [v for v in out if isinstance(v, bool) or not isinstance(v, int) and not (
        isinstance(v, float) and v.is_integer())]
    if bad:
        raise CheckFailed(f"{name} should return a list of integers, but it holds {repr(bad[0])[:40]} "
                          f"({type(bad[0]).__name__})")
    return [int(v) for v in out]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def random_unet(seed: int = 17):
    """A small class-conditional U-Net (8x8, 10 classes) with fixed random weights, its output layer too (so eps is
    not zero): what the build exercises run the learner's loop on."""
    from ..models.unet import UNet, UNetConfig

    g = torch.Generator().manual_seed(seed)
    model = UNet(UNetConfig(image_size=8, channels=(8, 16), num_classes=10, groups=4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def ok(name: str, what: str) -> None:
    print(f"✅ {name}: {what}")
