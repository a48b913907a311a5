r"""DDIM (Song, Meng & Ermon 2021): sampling a trained eps-model with fewer, optionally deterministic, steps.

For a decreasing sub-sequence of timesteps t > s (s = the next one, or "before 0" where \bar\alpha = 1):
    x0_hat = (x_t - sqrt(1 - \bar\alpha_t) eps) / sqrt(\bar\alpha_t)
    sigma  = eta * sqrt((1 - \bar\alpha_s) / (1 - \bar\alpha_t)) * sqrt(1 - \bar\alpha_t / \bar\alpha_s)
    x_s    = sqrt(\bar\alpha_s) x0_hat + sqrt(1 - \bar\alpha_s - sigma^2) eps + sigma z
eta = 0 is deterministic (an ODE solver in disguise); eta = 1 on the full sequence is DDPM's ancestral sampler.

Clipping. With clip_denoised, x0_hat is clipped to [-1, 1] and eps is re-derived from the clipped x0_hat,
    eps' = (x_t - sqrt(\bar\alpha_t) clip(x0_hat)) / sqrt(1 - \bar\alpha_t),
so that x0_hat and eps still add up to x_t. Keeping the model's own eps instead (`use_clipped_model_output=False`,
diffusers' DDIMScheduler default) adds sqrt(\bar\alpha_s) (clip(x0_hat) - x0_hat) on every step, an error that does
not shrink with the step size: with 1,000 steps DDIM then gets worse, not better (lesson 03 measures it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .checks import check_float_tensor, check_int, check_number, check_shape
from .ddpm import predict_eps_from_x0, predict_x0_from_eps
from .sampling import Cond, Model, TrajectoryRecorder, TrajectoryStep, check_cond, initial_noise, model_device, t_batch
from .schedules import NoiseSchedule


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` evenly spaced timesteps, decreasing, starting at 0 in steps of T // steps ("leading" spacing,
    as in DDIM's paper and diffusers' default): e.g. T = 1000, steps = 10 -> [900, 800, ..., 0]."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if steps > T:
        raise ValueError(f"steps={steps} is more than the model's T={T} timesteps")
    return [i * (T // steps) for i in range(steps)][::-1]


def check_timesteps(timesteps: Sequence[int], T: int) -> list[int]:
    """Validate a sampling sequence: integers in 0..T-1, strictly decreasing, non-empty."""
    if isinstance(timesteps, torch.Tensor):
        timesteps = timesteps.tolist()
    if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__"):
        raise ValueError(f"timesteps must be a sequence of integers, got {type(timesteps).__name__}")
    ts = [check_int(f"timesteps[{i}]", t) for i, t in enumerate(timesteps)]
    if not ts:
        raise ValueError("the timestep sequence is empty")
    bad = [t for t in ts if not 0 <= t < T]
    if bad:
        raise ValueError(f"timesteps {bad[:5]} are out of range for T={T} (valid: 0..{T - 1})")
    if any(b >= a for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"timesteps must be strictly decreasing (sampling runs from noise to data), got {ts[:8]}...")
    return ts


def _abar(schedule: NoiseSchedule, t: int) -> torch.Tensor:
    return schedule.alphas_cumprod[t].double() if t >= 0 else torch.tensor(1.0, dtype=torch.float64)


def ddim_step(
    schedule: NoiseSchedule,
    eps: torch.Tensor,
    xt: torch.Tensor,
    t: int,
    t_prev: int,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    clip_denoised: bool = True,
    use_clipped_model_output: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM update x_t -> x_{t_prev} (t_prev = -1 means "the clean image"). Returns (x_prev, x0_hat).

    clip_denoised clips x0_hat to [-1, 1]; use_clipped_model_output (named as in diffusers' `DDIMScheduler.step`)
    then re-derives eps from the clipped x0_hat (our default; False = diffusers' default, which keeps the model's
    eps and does not converge with more steps, see the module docstring)."""
    eta = check_number("eta", eta, 0.0, 1.0)  # 0 = DDIM, 1 = DDPM-like
    t = check_int("t", t, 0, schedule.T - 1)
    t_prev = check_int("t_prev", t_prev, -1, schedule.T - 1)
    if not -1 <= t_prev < t:
        raise ValueError(f"t_prev must satisfy -1 <= t_prev < t, got t={t}, t_prev={t_prev}")
    a_t, a_s = _abar(schedule, t), _abar(schedule, t_prev)
    x0_hat = predict_x0_from_eps(schedule, xt, t, eps)
    if clip_denoised:
        x0_hat = x0_hat.clamp(-1, 1)
        if use_clipped_model_output:
            eps = predict_eps_from_x0(schedule, xt, t, x0_hat)
    sigma = eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).sqrt()
    x_prev = a_s.sqrt().to(xt.dtype) * x0_hat + (1 - a_s - sigma**2).clamp(min=0).sqrt().to(xt.dtype) * eps
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(xt)
        x_prev = x_prev + sigma.to(xt.dtype) * noise
    return x_prev, x0_hat


@torch.no_grad()
def ddim_sample(
    model: Model,
    schedule: NoiseSchedule,
    shape: tuple[int, ...],
    *,
    steps: int | None = 50,
    cond: Cond | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    trajectory: bool | int = False,
    progress: bool = True,
    eta: float = 0.0,
    timesteps: Sequence[int] | None = None,
    clip_denoised: bool = True,
    use_clipped_model_output: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """Sample with DDIM over `timesteps` (default: `ddim_timesteps(T, steps)`), starting from `noise` (x_T) or fresh
    noise from the CPU `generator`. model(x_t, t, **cond) predicts eps. The signature is shared with
    `ddpm.p_sample_loop` and `flow.euler_sample`; `trajectory` returns [TrajectoryStep(t, x_t, x0_hat), ...] too,
    ending at t = -1 (the clean sample). clip_denoised / use_clipped_model_output: see `ddim_step`."""
    from tqdm.auto import tqdm

    shape = check_shape(shape)
    eta = check_number("eta", eta, 0.0, 1.0)
    ts = check_timesteps(timesteps if timesteps is not None else ddim_timesteps(schedule.T, steps), schedule.T)
    device = torch.device(device) if device is not None else model_device(model)
    cond = check_cond(cond, shape[0], device, model)
    schedule = schedule.to(device)
    x = initial_noise(shape, noise, generator, device)
    record = TrajectoryRecorder(trajectory)
    for i, t in enumerate(tqdm(ts, desc=f"DDIM {len(ts)} steps", disable=not progress, leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        z = torch.randn(shape, generator=generator).to(device) if eta > 0 else None
        eps = model(x, t_batch(x, t), **cond).float()
        x_prev, x0_hat = ddim_step(schedule, eps, x, t, t_prev, eta, z, clip_denoised,
                                  use_clipped_model_output)
        record.add(i, t, x, x0_hat)
        x = x_prev
    return record.result(x, -1, "DDIM sampling")


@torch.no_grad()
def ddim_invert(
    model: Model,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    steps: int = 50,
    cond: Cond | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Run the deterministic (eta = 0) DDIM update backwards, image -> noise: for increasing t_prev < t,
    x_t = sqrt(\\bar\\alpha_t) x0_hat + sqrt(1 - \\bar\\alpha_t) eps, with eps evaluated at the current (less
    noisy) point.
    Sampling the result with `ddim_sample(..., noise=result, eta=0, same steps)` approximately recovers x0."""
    from tqdm.auto import tqdm

    check_float_tensor("x0", x0, finite=True)
    ts = ddim_timesteps(schedule.T, steps)[::-1]  # increasing: 0, ..., T - T//steps
    schedule = schedule.to(x0.device)
    cond = check_cond(cond, x0.shape[0], x0.device)
    x = x0.float().clone()
    prev = -1
    for t in tqdm(ts, desc="DDIM inversion", disable=not progress, leave=False):
        eps = model(x, t_batch(x, max(prev, 0)), **cond).float()
        x0_hat = x if prev < 0 else predict_x0_from_eps(schedule, x, prev, eps)
        a_t = _abar(schedule, t)
        x = a_t.sqrt().to(x.dtype) * x0_hat + (1 - a_t).sqrt().to(x.dtype) * eps
        prev = t
    return x


def slerp(z0: torch.Tensor, z1: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (per sample): keeps the norm a Gaussian sample should have,
    unlike a straight line, whose midpoint has ~0.71x the norm.
    slerp = sin((1-lam) w) / sin(w) z0 + sin(lam w) / sin(w) z1,  w = angle between z0 and z1, lam in [0, 1]."""
    check_float_tensor("z0", z0, finite=True)
    check_float_tensor("z1", z1, finite=True)
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if z0.ndim < 2:
        raise ValueError(f"slerp works per sample on batches (B, ...), got shape {tuple(z0.shape)}: add a batch "
                         "dim with z[None]")
    a = torch.as_tensor(check_number("the interpolation weight lam", lam) if not isinstance(lam, torch.Tensor)
                        else lam, dtype=z0.dtype, device=z0.device)
    if not bool(torch.isfinite(a).all()):
        raise ValueError("the interpolation weight lam must be finite")
    f0, f1 = z0.flatten(1), z1.flatten(1)
    n0, n1 = f0.norm(dim=1), f1.norm(dim=1)
    zero = (n0 == 0) | (n1 == 0)
    if bool(zero.any()):
        i = int(zero.nonzero()[0])
        raise ValueError(f"sample {i} of {'z0' if n0[i] == 0 else 'z1'} is all zeros: slerp needs an angle between "
                         "two non-zero vectors (use noise, e.g. torch.randn)")
    cos = (f0 * f1).sum(1) / (n0 * n1)
    w = torch.arccos(cos.clamp(-1, 1)).reshape(-1, *([1] * (z0.ndim - 1)))
    sin_w = torch.sin(w)
    near = sin_w.abs() < 1e-6  # (anti)parallel vectors: the angle is ~0, slerp tends to the straight line
    safe = torch.where(near, torch.ones_like(sin_w), sin_w)
    out = (torch.sin((1 - a) * w) * z0 + torch.sin(a * w) * z1) / safe
    return torch.where(near, (1 - a) * z0 + a * z1, out)
