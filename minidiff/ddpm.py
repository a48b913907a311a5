r"""DDPM's forward process (and, from lesson 02 on, its reverse process).

q_sample implements the closed form  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps,  eps ~ N(0, I).
"""

from __future__ import annotations

import numpy as np
import torch

from .sampling import Cond, Model, TrajectoryRecorder, TrajectoryStep, check_cond, initial_noise, model_device
from .schedules import NoiseSchedule, extract
from .utils import check_float_tensor, check_int, check_shape, short


def _check_timesteps(t: torch.Tensor | int, batch: int, T: int, device: torch.device) -> torch.Tensor:
    """Integer timesteps in 0..T-1 as a long tensor of shape (batch,): a float t (2.7) is refused, not truncated, and
    t = -1 is refused, not read as T-1 by negative indexing."""
    if isinstance(t, np.integer):
        t = int(t)
    if isinstance(t, int) and not isinstance(t, bool):
        t = torch.full((batch,), t, dtype=torch.long, device=device)
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
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= T):
        bad = int(t.min()) if int(t.min()) < 0 else int(t.max())
        raise ValueError(f"timestep {bad} is out of range for a schedule with T={T} steps (valid: 0..{T - 1})")
    return t.long().to(device)


def _check_same_shape(name: str, value: object, xt: torch.Tensor) -> torch.Tensor:
    """`value` must be a float tensor with x_t's shape (no silent broadcasting of a batch of 1 over a batch of 4)."""
    check_float_tensor(name, value)
    if value.shape != xt.shape:
        raise ValueError(f"{name} must have x_t's shape {tuple(xt.shape)}, got {tuple(value.shape)}")
    return value


def q_sample(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor | int,
) -> torch.Tensor:
    r"""Sample x_t ~ q(x_t | x_0) in one shot:  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps.

    x0: (B, ...) clean data in [-1, 1]; noise: eps ~ N(0, I) with x0's shape; t: integer timesteps, shape (B,) (or
    one int for the whole batch). The argument order (x0, noise, t) is diffusers' `add_noise(original, noise, t)` and
    `flow.interpolate`'s.
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError(
            "x0 must be a batched tensor (B, C, H, W) (or (B, C, T, H, W)); "
            f"got {tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}"
        )
    if not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
        hint = ""
        if isinstance(t, torch.Tensor) and t.shape == x0.shape:
            hint = " (the arguments are q_sample(schedule, x0, noise, t): noise before t)"
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor with x0's shape {tuple(x0.shape)}, got {got}{hint}")
    check_float_tensor("x0", x0)
    check_float_tensor("noise", noise)
    t = _check_timesteps(t, x0.shape[0], schedule.T, x0.device)
    a = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    return a * x0 + s * noise


def forward_step(x_prev: torch.Tensor, beta_t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""One step of the forward chain:  x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps."""
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


# ------------------------------------------------------------------------------------------ the reverse process


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""Invert the closed form for x_0:  x0_hat = (x_t - sqrt(1 - \bar\alpha_t) eps) / sqrt(\bar\alpha_t).

    The coefficients are formed in float64: near t = T-1, x_t and sqrt(1 - \bar\alpha_t) eps nearly cancel and the
    difference is divided by a tiny sqrt(\bar\alpha_t), which would magnify float32 rounding of the coefficients.
    """
    check_float_tensor("x_t", xt)
    _check_same_shape("eps", eps, xt)
    t = _check_timesteps(t, xt.shape[0], schedule.T, xt.device)
    abar = extract(schedule.alphas_cumprod, t, xt.ndim).double()
    return ((xt - (1 - abar).sqrt().to(xt.dtype) * eps) / abar.sqrt().to(xt.dtype)).to(xt.dtype)


def predict_eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    r"""The noise that, with x0, makes x_t:  eps = (x_t - sqrt(\bar\alpha_t) x0) / sqrt(1 - \bar\alpha_t).

    The inverse of `predict_x0_from_eps` in its other argument; DDIM uses it to keep eps consistent with a clipped x0.
    """
    check_float_tensor("x_t", xt)
    _check_same_shape("x0", x0, xt)
    t = _check_timesteps(t, xt.shape[0], schedule.T, xt.device)
    abar = extract(schedule.alphas_cumprod, t, xt.ndim).double()
    return ((xt - abar.sqrt().to(xt.dtype) * x0) / (1 - abar).sqrt().to(xt.dtype)).to(xt.dtype)


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0) (Bayes' rule on three Gaussians).

    mean     = sqrt(\bar\alpha_{t-1}) beta_t / (1 - \bar\alpha_t) * x_0
             + sqrt(alpha_t) (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t) * x_t
    variance = beta_t (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)            (shape (B, 1, ..., 1))
    """
    check_float_tensor("x_t", xt)
    _check_same_shape("x0", x0, xt)
    t = _check_timesteps(t, xt.shape[0], schedule.T, xt.device)
    c1 = extract(schedule.posterior_mean_coef1, t, xt.ndim).to(xt.dtype)
    c2 = extract(schedule.posterior_mean_coef2, t, xt.ndim).to(xt.dtype)
    mean = c1 * x0 + c2 * xt
    var = extract(schedule.posterior_variance, t, xt.ndim).to(xt.dtype)
    return mean, var


def ddpm_loss(
    model: Model,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    cond: Cond | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""L_simple = E_{t, x_0, eps} || eps - eps_theta(sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps, t) ||^2.

    t is uniform on {0..T-1}; eps ~ N(0, I); the model is called as model(x_t, t, **cond). Random numbers are drawn
    on the CPU from `generator` (so a seed gives the same run on every device), then moved to x0's device.
    """
    b = x0.shape[0]
    cond = check_cond(cond, b, x0.device)
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(device=x0.device, dtype=x0.dtype)
    xt = q_sample(schedule, x0, noise, t)
    pred = model(xt, t, **cond)
    return torch.mean((pred.float() - noise.float()) ** 2)


@torch.no_grad()
def p_sample(
    schedule: NoiseSchedule,
    eps: torch.Tensor,
    xt: torch.Tensor,
    t: int,
    noise: torch.Tensor | None = None,
    clip_denoised: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One ancestral step x_t -> x_{t-1} ~ p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I), given eps_theta(x_t, t).

    x0_hat = (x_t - sqrt(1 - \bar\alpha_t) eps) / sqrt(\bar\alpha_t)   (clipped to [-1, 1] if clip_denoised)
    mu_theta = posterior mean with x0_hat in place of x_0                (without clipping this equals
               1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - \bar\alpha_t) eps), Ho et al.'s eq. 11)
    sigma_t^2 = posterior_variance_t ("fixed_small");  no noise is added at t = 0.
    Returns (x_{t-1}, x0_hat).
    """
    t = check_int("t", t, 0, schedule.T - 1)
    tt = torch.full((xt.shape[0],), t, dtype=torch.long, device=xt.device)
    x0_hat = predict_x0_from_eps(schedule, xt, tt, eps)
    if clip_denoised:
        x0_hat = x0_hat.clamp(-1, 1)
    mean, var = q_posterior_mean_variance(schedule, x0_hat, xt, tt)
    if t == 0:
        return mean, x0_hat
    if noise is None:
        noise = torch.randn_like(xt)
    return mean + var.clamp(min=1e-20).sqrt() * noise, x0_hat


@torch.no_grad()
def p_sample_loop(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    steps: int | None = None,
    cond: Cond | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    trajectory: bool | int = False,
    progress: bool = True,
    clip_denoised: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """Ancestral sampling: start from x_T ~ N(0, I) (or `noise`) and apply `p_sample` for t = T-1, ..., 0.

    The sampler signature shared with `ddim.ddim_sample` and `flow.euler_sample` (see `minidiff.sampling`):
    model(x_t, t, **cond) predicts eps; `steps` must be T (or None): ancestral sampling visits every step (for fewer,
    use `ddim_sample`, whose eta = 1 is the same process on a sub-sequence). Random numbers come from the CPU
    `generator` (the same seed gives the same samples on every device); `device` defaults to the model's. With
    `trajectory` (True, or every k-th step), also returns [TrajectoryStep(t, x_t, x0_hat), ...] ending at t = -1.
    """
    from tqdm.auto import tqdm

    T = schedule.T
    if steps is not None and steps != T:
        raise ValueError(f"ancestral sampling runs all T={T} steps (got steps={steps}); for fewer steps use "
                         "ddim.ddim_sample (eta=1 is the ancestral process on a sub-sequence)")
    shape = check_shape(shape)
    device = torch.device(device) if device is not None else model_device(model)
    cond = check_cond(cond, shape[0], device, model)
    schedule = schedule.to(device)
    x = initial_noise(shape, noise, generator, device)
    record = TrajectoryRecorder(trajectory)
    for i, t in enumerate(tqdm(range(T - 1, -1, -1), desc="DDPM sampling", disable=not progress, leave=False)):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = model(x, tt, **cond)
        z = torch.randn(shape, generator=generator).to(device) if t > 0 else None
        x_prev, x0_hat = p_sample(schedule, eps.float(), x, t, z, clip_denoised)
        record.add(i, t, x, x0_hat)
        x = x_prev
    return record.result(x, -1, "DDPM sampling")
