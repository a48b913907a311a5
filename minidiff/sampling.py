"""What every sampler shares: one calling convention, the starting noise, the conditioning, the trajectory.

All three samplers (`ddpm.p_sample_loop`, `ddim.ddim_sample`, `flow.euler_sample`) are called the same way:

    x = sampler(model, [schedule,] shape, steps=..., cond={"y": labels}, noise=None, generator=g)
    x, trajectory = sampler(..., trajectory=True)

and call the denoiser as `model(x, t, **cond)`, whatever the condition: class labels `{"y": labels}`, text
`{"txt": txt, "y_vec": y_vec}`, or nothing (`cond=None`). This is DiT's `model_kwargs` and Flux's
`model(img, ..., txt=..., y=...)`. Classifier-free guidance (`guidance.ClassifierFreeGuidance`) is itself such a
model, so it works with every sampler unchanged.

Base layer of the package: imports only `checks` from minidiff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch

from .checks import check_float_tensor, short

Model = Callable[..., torch.Tensor]
Cond = Mapping[str, torch.Tensor]


class TrajectoryStep(NamedTuple):
    """One point of a sampling trajectory (tensors on the CPU).

    t: the time of x (DDPM/DDIM: the integer step, -1 after the last step; flow: t in [0, 1]); x: the sample at t;
    x0_hat: the model's estimate of the clean sample from x (the sample itself at the end).
    """

    t: float
    x: torch.Tensor
    x0_hat: torch.Tensor


def t_batch(x: torch.Tensor, t: int | float) -> torch.Tensor:
    """The model's t for a batch x: the same t for every sample, shape (B,) (long for DDPM's int steps, float32 for
    flow's t in [0, 1])."""
    return torch.full((x.shape[0],), t, device=x.device)


def model_device(model: Model) -> torch.device:
    """The device of the model's first parameter (the CPU for a plain function or a parameter-free module)."""
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def _keywords(model: Model) -> list[str] | None:
    """The keyword arguments model(x, t, **cond) accepts after x and t, or None if it takes any (**kwargs)."""
    import inspect

    fn = model.forward if isinstance(model, torch.nn.Module) else model
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params[2:]]


def check_cond(cond: Cond | None, batch: int, device: torch.device | str | None = None,
               model: Model | None = None) -> dict[str, torch.Tensor]:
    """Validate the conditioning of a batch: a dict of tensors whose first dim is the batch size (moved to
    `device`), whose keys the `model` (if given) accepts. None means unconditional, {}."""
    if cond is None:
        return {}
    if not isinstance(cond, Mapping):
        raise ValueError(f"cond must be a dict of keyword arguments for the model, e.g. cond={{'y': labels}}; got "
                         f"{type(cond).__name__}")
    known = _keywords(model) if model is not None else None
    if known is not None:
        unknown = sorted(set(cond) - set(known))
        if unknown:
            raise ValueError(f"cond has keyword(s) {unknown} that {type(model).__name__} does not take; it takes "
                             f"model(x, t{''.join(', ' + k for k in known)})")
    out = {}
    for k, v in cond.items():
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"cond[{k!r}] must be a tensor with one entry per sample, got {type(v).__name__} "
                             f"{short(v)}")
        if v.ndim == 0 or v.shape[0] != batch:
            raise ValueError(f"cond[{k!r}] has shape {tuple(v.shape)}: its first dim must be the batch size {batch}")
        out[k] = v.to(device) if device is not None else v
    return out


def initial_noise(shape: tuple[int, ...], noise: torch.Tensor | None, generator: torch.Generator | None,
                  device: torch.device | str) -> torch.Tensor:
    """The sample at the start of the reverse process: `noise` if given (checked against `shape`), else fresh
    N(0, I) drawn on the CPU from `generator` (so a seed gives the same samples on every device)."""
    if noise is not None:
        check_float_tensor("noise", noise, finite=True)
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, but the sampler was asked for shape "
                             f"{tuple(shape)}")
        return noise.detach().clone().float().to(device)
    return torch.randn(tuple(shape), generator=generator).to(device)


def check_finite_sample(x: torch.Tensor, sampler: str) -> torch.Tensor:
    """A sampler's result must be finite: NaN here means NaN weights, a NaN condition or a diverged model."""
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{sampler} produced NaN or infinite values: the model returned non-finite "
                                 "predictions (check its weights and the condition for NaN, or retrain it)")
    return x


class TrajectoryRecorder:
    """Collects TrajectoryStep's: every `every`-th step (True = every step; False = none) and always the end."""

    def __init__(self, every: bool | int):
        if isinstance(every, bool):
            every = 1 if every else 0
        if not isinstance(every, int) or every < 0:
            raise ValueError(f"trajectory must be False, True or a positive step interval, got {every!r}")
        self.every, self.steps = every, []

    def __bool__(self) -> bool:
        return self.every > 0

    def add(self, i: int, t: float, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        if self.every and i % self.every == 0:
            self.steps.append(TrajectoryStep(t, x.detach().cpu(), x0_hat.detach().cpu()))

    def result(self, x: torch.Tensor, t_end: float, sampler: str
               ) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
        """What a sampler returns: x, or (x, trajectory) when recording; x must be finite (`check_finite_sample`)."""
        check_finite_sample(x, sampler)
        return (x, self.finish(t_end, x)) if self else x

    def finish(self, t_end: float, x: torch.Tensor) -> list[TrajectoryStep]:
        if self.every:
            self.steps.append(TrajectoryStep(t_end, x.detach().cpu(), x.detach().cpu()))
        return self.steps
