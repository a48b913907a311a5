r"""DDPM's forward process (and, from lesson 02 on, its reverse process).

q_sample implements the closed form  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps,  eps ~ N(0, I).
"""

from __future__ import annotations

from collections.abc import Callable

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


# ------------------------------------------------------------------------------------------ the reverse process


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    r"""Invert the closed form for x_0:  x0_hat = (x_t - sqrt(1 - \bar\alpha_t) eps) / sqrt(\bar\alpha_t)."""
    a = extract(schedule.sqrt_alphas_cumprod, t, xt.ndim).to(xt.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, xt.ndim).to(xt.dtype)
    return (xt - s * eps) / a


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0) (Bayes' rule on three Gaussians).

    mean     = sqrt(\bar\alpha_{t-1}) beta_t / (1 - \bar\alpha_t) * x_0
             + sqrt(alpha_t) (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t) * x_t
    variance = beta_t (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)            (shape (B, 1, ..., 1))
    """
    t = _check_timesteps(t, xt.shape[0], schedule.T, xt.device)
    c1 = extract(schedule.posterior_mean_coef1, t, xt.ndim).to(xt.dtype)
    c2 = extract(schedule.posterior_mean_coef2, t, xt.ndim).to(xt.dtype)
    mean = c1 * x0 + c2 * xt
    var = extract(schedule.posterior_variance, t, xt.ndim).to(xt.dtype)
    return mean, var


def ddpm_loss(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""L_simple = E_{t, x_0, eps} || eps - eps_theta(sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps, t) ||^2.

    t is uniform on {0..T-1}; eps ~ N(0, I). Random numbers are drawn on the CPU from `generator` (so a seed gives
    the same run on every device), then moved to x0's device.
    """
    b = x0.shape[0]
    t = torch.randint(0, schedule.T, (b,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(device=x0.device, dtype=x0.dtype)
    xt = q_sample(schedule, x0, t, noise)
    pred = model(xt, t, labels) if labels is not None else model(xt, t)
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
               1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - \bar\alpha_t) eps), the seeds' form)
    sigma_t^2 = posterior_variance_t ("fixed_small");  no noise is added at t = 0.
    Returns (x_{t-1}, x0_hat).
    """
    tt = torch.full((xt.shape[0],), int(t), dtype=torch.long, device=xt.device)
    x0_hat = predict_x0_from_eps(schedule, xt, tt, eps)
    if clip_denoised:
        x0_hat = x0_hat.clamp(-1, 1)
    mean, var = q_posterior_mean_variance(schedule, x0_hat, xt, tt)
    if int(t) == 0:
        return mean, x0_hat
    if noise is None:
        noise = torch.randn_like(xt)
    return mean + var.clamp(min=1e-20).sqrt() * noise, x0_hat


@torch.no_grad()
def p_sample_loop(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    clip_denoised: bool = True,
    return_trajectory: bool = False,
    trajectory_every: int = 50,
    progress: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, list[tuple[int, torch.Tensor, torch.Tensor]]]:
    """Ancestral sampling: start from x_T ~ N(0, I) and apply `p_sample` for t = T-1, ..., 0.

    model(x_t, t[, labels]) predicts eps. Random numbers come from `generator` (a CPU generator: the same seed
    gives the same samples on every device). With return_trajectory, also returns [(t, x_t, x0_hat), ...] every
    `trajectory_every` steps and at t = 0 (tensors on the CPU).
    """
    from tqdm.auto import tqdm

    if labels is not None and labels.shape[0] != shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} entries for a batch of {shape[0]}")
    schedule = schedule.to(device)
    x = torch.randn(shape, generator=generator).to(device)
    traj: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for t in tqdm(range(schedule.T - 1, -1, -1), desc="DDPM sampling", disable=not progress, leave=False):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = model(x, tt, labels) if labels is not None else model(x, tt)
        z = torch.randn(shape, generator=generator).to(device) if t > 0 else None
        x_prev, x0_hat = p_sample(schedule, eps.float(), x, t, z, clip_denoised)
        if return_trajectory and (t % trajectory_every == 0 or t == schedule.T - 1):
            traj.append((t, x.cpu(), x0_hat.cpu()))
        x = x_prev
    return (x, traj) if return_trajectory else x
