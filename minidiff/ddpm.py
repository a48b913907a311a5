r"""DDPM's forward process (and, from lesson 02 on, its reverse process).

q_sample implements the closed form  x_t = sqrt(\bar\alpha_t) x_0 + sqrt(1 - \bar\alpha_t) eps,  eps ~ N(0, I).

Each public function checks its inputs in its first lines (`minidiff.checks`), then is the formula alone. t is one
int for the whole batch (what the samplers pass: checked without reading a tensor back from the device) or a long
tensor of shape (B,).
"""

from __future__ import annotations

import torch

from .checks import check_batch, check_ddpm_t, check_float_tensor, check_int, check_like, check_shape
from .guidance import label_cond
from .sampling import Cond, Model, TrajectoryRecorder, TrajectoryStep, check_cond, initial_noise, model_device, t_batch
from .schedules import NoiseSchedule, extract


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
    check_batch("x0", x0)
    swapped = isinstance(t, torch.Tensor) and t.shape == x0.shape
    check_like("noise", noise, x0, "x0", " (q_sample(schedule, x0, noise, t): noise before t)" * swapped)
    t = check_ddpm_t(t, x0.shape[0], schedule.T, x0.device)
    a = extract(schedule.sqrt_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    s = extract(schedule.sqrt_one_minus_alphas_cumprod, t, x0.ndim).to(x0.dtype)
    return a * x0 + s * noise


def forward_step(x_prev: torch.Tensor, beta_t: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    r"""One step of the forward chain:  x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps."""
    beta_t = torch.as_tensor(beta_t, dtype=x_prev.dtype, device=x_prev.device)
    return (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * noise


# ------------------------------------------------------------------------------------------ the reverse process


def predict_x0_from_eps(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor
                       ) -> torch.Tensor:
    r"""Invert the closed form for x_0:  x0_hat = (x_t - sqrt(1 - \bar\alpha_t) eps) / sqrt(\bar\alpha_t).

    The coefficients are formed in float64: near t = T-1, x_t and sqrt(1 - \bar\alpha_t) eps nearly cancel and the
    difference is divided by a tiny sqrt(\bar\alpha_t), which would magnify float32 rounding of the coefficients.
    """
    check_like("eps", eps, check_float_tensor("x_t", xt))
    t = check_ddpm_t(t, xt.shape[0], schedule.T, xt.device)
    abar = extract(schedule.alphas_cumprod, t, xt.ndim).double()
    return ((xt - (1 - abar).sqrt().to(xt.dtype) * eps) / abar.sqrt().to(xt.dtype)).to(xt.dtype)


def predict_eps_from_x0(schedule: NoiseSchedule, xt: torch.Tensor, t: torch.Tensor | int, x0: torch.Tensor
                       ) -> torch.Tensor:
    r"""The noise that, with x0, makes x_t:  eps = (x_t - sqrt(\bar\alpha_t) x0) / sqrt(1 - \bar\alpha_t).

    The inverse of `predict_x0_from_eps` in its other argument; DDIM uses it to keep eps consistent with a clipped x0.
    """
    check_like("x0", x0, check_float_tensor("x_t", xt))
    t = check_ddpm_t(t, xt.shape[0], schedule.T, xt.device)
    abar = extract(schedule.alphas_cumprod, t, xt.ndim).double()
    return ((xt - abar.sqrt().to(xt.dtype) * x0) / (1 - abar).sqrt().to(xt.dtype)).to(xt.dtype)


def q_posterior_mean_variance(
    schedule: NoiseSchedule, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of the forward posterior q(x_{t-1} | x_t, x_0) (Bayes' rule on three Gaussians).

    mean     = sqrt(\bar\alpha_{t-1}) beta_t / (1 - \bar\alpha_t) * x_0
             + sqrt(alpha_t) (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t) * x_t
    variance = beta_t (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t)            (shape (B, 1, ..., 1))
    """
    check_like("x0", x0, check_float_tensor("x_t", xt))
    t = check_ddpm_t(t, xt.shape[0], schedule.T, xt.device)
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


def ddpm_loss_fn(schedule: NoiseSchedule, num_classes: int, label_dropout: float):
    """L_simple with class labels, each dropped to the null label with probability `label_dropout` (ready for
    classifier-free guidance), as loss_fn(model, x, y, generator) for `train.train`."""

    def loss_fn(model, x, y, g):
        return ddpm_loss(model, schedule, x, cond=label_cond(y, num_classes, label_dropout, g), generator=g)

    return loss_fn


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
    x0_hat = predict_x0_from_eps(schedule, xt, t, eps)
    if clip_denoised:
        x0_hat = x0_hat.clamp(-1, 1)
    mean, var = q_posterior_mean_variance(schedule, x0_hat, xt, t)
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
        eps = model(x, t_batch(x, t), **cond)
        z = torch.randn(shape, generator=generator).to(device) if t > 0 else None
        x_prev, x0_hat = p_sample(schedule, eps.float(), x, t, z, clip_denoised)
        record.add(i, t, x, x0_hat)
        x = x_prev
    return record.result(x, -1, "DDPM sampling")
