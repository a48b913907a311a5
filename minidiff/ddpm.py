r"""DDPM's forward process (and, from lesson 02 on, its reverse process).

q_sample implements the closed form  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps,  eps ~ N(0, I).
"""

from __future__ import annotations

import torch

from .schedules import NoiseSchedule, extract


def _check_timesteps(t: torch.Tensor | int, batch: int, T: int, device: torch.device) -> torch.Tensor:
    if isinstance(t, int) and not isinstance(t, bool):
        t = torch.full((batch,), t, dtype=torch.long, device=device)
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be an int or an integer tensor of shape (B,), got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"t must hold integer timesteps (dtype long), got dtype {t.dtype}")
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim != 1 or t.shape[0] != batch:
        raise ValueError(f"t must have shape (B,) = ({batch},) to match x0's batch, got {tuple(t.shape)}")
    if batch and (int(t.min()) < 0 or int(t.max()) >= T):
        bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
        raise ValueError(f"timestep {bad} is out of range for a schedule with T={T} steps (valid: 0..{T - 1})")
    return t.long().to(device)


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Sample x_t ~ q(x_t | x_0) in one shot:  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps.

    x0: (B, ...) clean data in [-1, 1]; t: integer timesteps, shape (B,) (or one int for the whole batch);
    noise: eps with x0's shape (drawn from N(0, I) when omitted).
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError(
            "x0 must be a batched tensor (B, C, H, W) (or (B, C, T, H, W)); "
            f"got {tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}"
        )
    t = _check_timesteps(t, x0.shape[0], schedule.T, x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    a = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    return a * x0 + s * noise


def forward_step(x_prev: torch.Tensor, beta_t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""One step of the forward chain:  x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps."""
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise
