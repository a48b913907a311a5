r"""Flow matching / rectified flow, in the convention of the seeds, Open-Sora and Flux.

Continuous t in [0, 1], t = 1 is pure noise:
    x_t = (1 - t) x_0 + t eps,            eps ~ N(0, I)        (the "data definition": a straight line)
    v   = dx_t/dt = eps - x_0                                  (the "model definition": predict the velocity)
    loss = E || v_theta(x_t, t) - (eps - x_0) ||^2
Sampling integrates dx/dt = v_theta from t = 1 down to 0 with Euler steps:  x <- x + (t_next - t) v_theta(x, t).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Model = Callable[..., torch.Tensor]


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, with t of shape (B,) in [0, 1]."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    if t.ndim != 1 or t.shape[0] != x0.shape[0]:
        raise ValueError(f"t must have shape ({x0.shape[0]},), got {tuple(t.shape)}")
    tb = _bcast(t, x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = d x_t / dt = eps - x_0 (constant along each straight path)."""
    return noise - x0


def logit_normal_t(n: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0
                   ) -> torch.Tensor:
    """t = sigmoid(u), u ~ N(mean, std^2): concentrates training on the middle noise levels (SD3, Open-Sora)."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator))


def time_shift(alpha: float, t: torch.Tensor) -> torch.Tensor:
    """Open-Sora/Flux/SD3 timestep shift: t' = alpha t / (1 + (alpha - 1) t).

    alpha > 1 moves every t towards 1, so training and sampling spend more of their steps at high noise."""
    if not alpha > 0:
        raise ValueError(f"the shift alpha must be positive, got {alpha}")
    return alpha * t / (1 + (alpha - 1) * t)


def euler_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The sampling grid: linspace(1, 0, steps + 1), then time_shift(shift, .). Decreasing, from 1 to 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return time_shift(shift, torch.linspace(1, 0, steps + 1, dtype=torch.float64))


def flow_loss(
    model: Model,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    logit_normal: bool = True,
    shift: float = 1.0,
) -> torch.Tensor:
    """E || v_theta(x_t, t) - (eps - x_0) ||^2 with t ~ logit-normal (or uniform), optionally shifted.

    The network receives t * 1000 (as Open-Sora's timestep embedding does), so the same U-Net/DiT code serves both
    DDPM's integer steps and flow matching's continuous time. Random numbers come from `generator` on the CPU.
    """
    b = x0.shape[0]
    t = logit_normal_t(b, generator) if logit_normal else torch.rand(b, generator=generator)
    if shift != 1.0:
        t = time_shift(shift, t)
    noise = torch.randn(x0.shape, generator=generator)
    t, noise = t.to(x0.device), noise.to(device=x0.device, dtype=x0.dtype)
    xt = interpolate(x0, noise, t)
    tt = t * 1000
    pred = model(xt, tt, labels) if labels is not None else model(xt, tt)
    return torch.mean((pred.float() - velocity_target(x0, noise).float()) ** 2)


@torch.no_grad()
def euler_sample(
    model: Model,
    shape: tuple[int, ...],
    steps: int = 20,
    shift: float = 1.0,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    x_1: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
    return_trajectory: bool = False,
    progress: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Integrate dx/dt = v_theta(x, t) from t = 1 (noise) to t = 0 (data) with Euler steps on `euler_timesteps`.

    x <- x + (t_next - t_cur) * v_theta(x, t_cur * 1000). With return_trajectory, also the list of x at every grid
    point (on the CPU).
    """
    from tqdm.auto import tqdm

    ts = euler_timesteps(steps, shift)
    if labels is not None and labels.shape[0] != shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for a batch of {shape[0]}")
    x = (x_1.clone() if x_1 is not None else torch.randn(shape, generator=generator)).to(device).float()
    traj = [x.cpu()] if return_trajectory else []
    for i in tqdm(range(steps), desc=f"Euler {steps} steps", disable=not progress, leave=False):
        t_cur, t_next = float(ts[i]), float(ts[i + 1])
        tt = torch.full((shape[0],), t_cur * 1000, device=device)
        v = model(x, tt, labels) if labels is not None else model(x, tt)
        x = x + (t_next - t_cur) * v.float()
        if return_trajectory:
            traj.append(x.cpu())
    return (x, traj) if return_trajectory else x


# ------------------------------------------------------------------------------------- the unified view (seed 004)


def estimates_from_velocity(xt: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From x_t = (1 - t) x_0 + t eps and v = eps - x_0:  x0_hat = x_t - t v,  eps_hat = x_t + (1 - t) v."""
    tb = _bcast(t, xt)
    return xt - tb * v, xt + (1 - tb) * v


def unified_step(a_s: float | torch.Tensor, b_s: float | torch.Tensor, x0_hat: torch.Tensor,
                 eps_hat: torch.Tensor) -> torch.Tensor:
    """The deterministic update shared by DDIM (eta = 0) and flow Euler: re-noise the current estimates to the next
    noise level of the data definition x_s = a_s x_0 + b_s eps.
    DDIM: a = sqrt(abar), b = sqrt(1 - abar), model predicts eps.  Flow: a = 1 - t, b = t, model predicts v."""
    return a_s * x0_hat + b_s * eps_hat
