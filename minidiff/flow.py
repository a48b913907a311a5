r"""Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023), in the convention of SD3, Flux and Open-Sora.

Continuous t in [0, 1], t = 1 is pure noise:
    x_t = (1 - t) x_0 + t eps,            eps ~ N(0, I)        (the "data definition": a straight line)
    v   = dx_t/dt = eps - x_0                                  (the "model definition": predict the velocity)
    loss = E || v_theta(x_t, t) - (eps - x_0) ||^2
Sampling integrates dx/dt = v_theta from t = 1 down to 0 with Euler steps:  x <- x + (t_next - t) v_theta(x, t)
(or Heun's second-order steps, `heun_sample`).
Models receive t itself, in [0, 1]; each scales it for its sinusoidal embedding (`time_factor` = 1000, as in Flux).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .checks import check_float_tensor, check_flow_t, check_grid, check_like, check_number, check_shape
from .guidance import label_cond
from .sampling import Cond, Model, TrajectoryRecorder, TrajectoryStep, check_cond, initial_noise, model_device, t_batch


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, with t of shape (B,) in [0, 1]."""
    check_like("noise", noise, check_float_tensor("x0", x0), "x0")
    tb = _bcast(check_flow_t(t, x0.shape[0]), x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = d x_t / dt = eps - x_0 (constant along each straight path)."""
    return noise - x0


def logit_normal_t(n: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0
                   ) -> torch.Tensor:
    """t = sigmoid(u), u ~ N(mean, std^2): concentrates training on the middle noise levels (SD3, Open-Sora)."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator))


def time_shift(shift: float, t: torch.Tensor) -> torch.Tensor:
    """Open-Sora/Flux/SD3 timestep shift: t' = gamma t / (1 + (gamma - 1) t), gamma = `shift`.

    gamma > 1 moves every t towards 1, so training and sampling spend more of their steps at high noise. (SD3's
    paper writes the factor as alpha; the course keeps alpha for the diffusion schedule, see README "Notation".)"""
    shift = check_number("the shift gamma", shift, low=1e-3, high=1e3)  # beyond, 1 + (gamma - 1) t rounds to 0
    return shift * t / (1 + (shift - 1) * t)


def resolution_shift(tokens_per_frame: int, latent_frames: int = 1, base_shift: float = 1.0,
                     max_shift: float = 3.0) -> float:
    """Open-Sora v2's shift gamma for a latent size (`get_res_lin_function` in opensora/utils/sampling.py):
    gamma = lin(tokens_per_frame) * sqrt(latent_frames), with lin the line through (256, base_shift) and
    (4096, max_shift). More tokens carry more redundant detail, so more of the training and sampling time goes to
    high noise, where the layout is decided; longer videos even more so."""
    if tokens_per_frame <= 0 or latent_frames <= 0:
        raise ValueError(f"tokens_per_frame and latent_frames must be positive, got {tokens_per_frame}, "
                         f"{latent_frames}")
    lin = base_shift + (tokens_per_frame - 256) * (max_shift - base_shift) / (4096 - 256)
    return lin * math.sqrt(latent_frames)


def euler_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """The sampling grid: linspace(1, 0, steps + 1), then time_shift(shift, .). Decreasing, from 1 to 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return time_shift(shift, torch.linspace(1, 0, steps + 1, dtype=torch.float64))


def noised(x0: torch.Tensor, generator: torch.Generator | None = None, logit_normal: bool = True,
           shift: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training draw: (t, noise, x_t) with t ~ logit-normal (or uniform), optionally shifted, noise ~ N(0, I)
    and x_t = (1 - t) x_0 + t noise. Random numbers come from `generator` on the CPU."""
    b = x0.shape[0]
    shift = check_number("shift", shift, low=1e-3, high=1e3)
    t = logit_normal_t(b, generator) if logit_normal else torch.rand(b, generator=generator)
    if shift != 1.0:
        t = time_shift(shift, t)
    noise = torch.randn(x0.shape, generator=generator)
    t, noise = t.to(x0.device), noise.to(device=x0.device, dtype=x0.dtype)
    return t, noise, interpolate(x0, noise, t)


def flow_loss(
    model: Model,
    x0: torch.Tensor,
    *,
    cond: Cond | None = None,
    generator: torch.Generator | None = None,
    logit_normal: bool = True,
    shift: float = 1.0,
) -> torch.Tensor:
    """E || v_theta(x_t, t) - (eps - x_0) ||^2 with t ~ logit-normal (or uniform), optionally shifted.

    The model is called as model(x_t, t, **cond) with t in [0, 1]. Random numbers come from `generator` on the CPU.
    """
    check_float_tensor("x0", x0)
    cond = check_cond(cond, x0.shape[0], x0.device)
    t, noise, xt = noised(x0, generator, logit_normal, shift)
    pred = model(xt, t, **cond)
    return torch.mean((pred.float() - velocity_target(x0, noise).float()) ** 2)


def flow_loss_fn(num_classes: int, label_dropout: float, logit_normal: bool = True):
    """`flow_loss` with class labels, each dropped to the null label with probability `label_dropout` (for
    guidance), as loss_fn(model, x, y, generator) for `train.train`."""

    def loss_fn(model, x, y, g):
        return flow_loss(model, x, cond=label_cond(y, num_classes, label_dropout, g), generator=g,
                         logit_normal=logit_normal)

    return loss_fn


@torch.no_grad()
def euler_sample(model: Model, shape: tuple[int, ...], *, steps: int = 20, **options
                 ) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """Integrate dx/dt = v_theta(x, t) from t = 1 (noise) to t = 0 (data) with Euler steps on `euler_timesteps`:
    x <- x + (t_next - t_cur) * model(x, t_cur, **cond).

    The keyword `options` are `integrate`'s (`cond`, `noise`, `generator`, `device`, `trajectory`, `progress`, `shift`,
    `timesteps`), shared with `ddpm.p_sample_loop` and `ddim.ddim_sample`; `noise` is the starting x_1. With
    `trajectory`, also returns [TrajectoryStep(t, x_t, x0_hat = x_t - t v), ...] at the grid points, ending at t = 0.
    """
    return integrate(model, shape, steps=steps, method="euler", **options)


@torch.no_grad()
def integrate(model: Model, shape: tuple[int, ...], *, steps: int = 20, method: str = "euler", churn: float = 0.0,
              cond: Cond | None = None, noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
              device: torch.device | str | None = None, trajectory: bool | int = False, progress: bool = True,
              shift: float = 1.0, timesteps: torch.Tensor | None = None,
              before_step: Callable[[torch.Tensor, float], torch.Tensor] | None = None, invert: bool = False
              ) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """The one loop behind `euler_sample`, `heun_sample` and `sde_sample`: check the inputs, build the grid, take the
    steps (method "euler", or "heun" with Heun's correction; Euler-Maruyama when churn > 0).

    `cond`: the model's keyword inputs; `noise`: the starting x (else drawn from `generator`); `trajectory`: also
    return the steps (True, or every n-th); `timesteps` (a decreasing grid in [0, 1], e.g. the tail of
    `euler_timesteps`) replaces steps/shift, and `noise` is then the starting x at timesteps[0] — a partly noised
    latent starts the sampler part-way (SDEdit-style). With `invert`, `timesteps` must increase instead and the
    same steps run from data towards noise (inversion, `editing.invert`). `before_step(x, t)`, if given, returns the
    x each step starts from (`editing.inpaint` puts the known region back there)."""
    from tqdm.auto import tqdm

    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    churn = check_number("churn", churn, low=0.0, high=100.0)
    if method == "heun" and churn > 0:
        raise ValueError("Heun's correction is for the ODE (churn = 0); use method='euler' with churn > 0 for the SDE")
    shape = check_shape(shape)
    if invert and (timesteps is None or churn > 0):
        raise ValueError("inversion runs the ODE (churn = 0) on a given increasing grid of timesteps")
    ts = euler_timesteps(steps, shift) if timesteps is None else check_grid(timesteps, increasing=invert)
    device = torch.device(device) if device is not None else model_device(model)
    cond = check_cond(cond, shape[0], device, model)
    x = initial_noise(shape, noise, generator, device)
    record = TrajectoryRecorder(trajectory)
    heun = method == "heun"
    name, steps = ("Heun" if heun else "SDE" if churn > 0 else "Euler"), len(ts) - 1
    grid = ts.tolist()  # python floats: the loop reads no tensor back
    for i in tqdm(range(steps), desc=f"{name} {steps} steps", disable=not progress, leave=False):
        t_cur, t_next = grid[i], grid[i + 1]
        if before_step is not None:
            x = before_step(x, t_cur)
        v = model(x, t_batch(x, t_cur), **cond).float()
        record.add(i, t_cur, x, x - t_cur * v)
        x_next = x + (t_next - t_cur) * v
        if heun and t_next != 0:  # Heun: the slope where the Euler step lands corrects it (not on the step to t = 0)
            v_next = model(x_next, t_batch(x, t_next), **cond).float()
            x_next = x + (t_next - t_cur) * (v + v_next) / 2
        if churn > 0:  # the SDE: the Langevin half of the step, (churn/2) eps_hat drift plus fresh noise
            x_next = x_next + (t_next - t_cur) * churn / 2 * (x + (1 - t_cur) * v)
            z = torch.randn(shape, generator=generator).to(device)
            x_next = x_next + (churn * t_cur * (t_cur - t_next)) ** 0.5 * z
        x = x_next
    return record.result(x, grid[-1], f"{name} sampling")


@torch.no_grad()
def heun_sample(model: Model, shape: tuple[int, ...], *, steps: int = 10, **options
                ) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """Heun's method (the explicit trapezoidal rule; Karras et al. 2022, "EDM", algorithm 1) on the same grid as
    `euler_sample`: an Euler step predicts x at t_next, the slope there corrects it, and the step uses their mean:

        v1 = model(x, t_cur);  x_pred = x + (t_next - t_cur) v1;  v2 = model(x_pred, t_next)
        x <- x + (t_next - t_cur) (v1 + v2) / 2

    The step that ends at t = 0 stays a plain Euler step (EDM's algorithm and diffusers'
    `FlowMatchHeunDiscreteScheduler` do the same), so `steps` steps cost 2 * steps - 1 model calls; the error
    shrinks like 1/steps^2 instead of Euler's 1/steps. Same arguments and returns as `euler_sample`.
    """
    return integrate(model, shape, steps=steps, method="heun", **options)


# ------------------------------------------------------------------------------ score, SDE and probability flow
# Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations" (ICLR 2021): every
# diffusion or flow has a deterministic sampler (the probability-flow ODE) and a family of stochastic ones with the
# same marginals p_t; the two differ by a Langevin step that uses the score grad_x log p_t(x).


def score_from_velocity(xt: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The score of the noisy data, grad_x log p_t(x), from a velocity prediction (t > 0):

        score = -eps_hat / t   with  eps_hat = x_t + (1 - t) v   (x_t = (1 - t) x_0 + t eps).

    The noise estimate *is* a scaled score: E[eps | x_t] = -t grad log p_t(x_t) (Tweedie's formula). For DDPM's
    data definition the same holds with sqrt(1 - abar_t) in place of t."""
    check_like("v", v, xt)
    tb = _bcast(check_flow_t(t, xt.shape[0]), xt)
    if bool((tb <= 0).any()):
        raise ValueError("the score is defined for t > 0 only (at t = 0 p_t is the data distribution itself)")
    return -(xt + (1 - tb) * v) / tb


@torch.no_grad()
def sde_sample(model: Model, shape: tuple[int, ...], *, steps: int = 50, churn: float = 1.0, **options
               ) -> torch.Tensor | tuple[torch.Tensor, list[TrajectoryStep]]:
    """Euler-Maruyama on the reverse-time SDE with the flow's marginals, g(t)^2 = churn * t:

        dx = [v - (g^2 / 2) score] dt + g dW   =   [v + (churn / 2) eps_hat] dt + g dW,   t from 1 to 0,

    i.e. per step (h = t_next - t_cur < 0): x <- x + h (v + churn/2 eps_hat) + sqrt(churn t_cur |h|) z.
    churn = 0 is `euler_sample` (the probability-flow ODE); churn > 0 adds a Langevin move (a step up the score plus
    fresh noise) at every noise level. Same arguments and returns as `euler_sample` (`trajectory` too); noise for z
    comes from `generator`."""
    return integrate(model, shape, steps=steps, churn=churn, **options)


# ------------------------------------------------------------------------------------- the unified view
# Diffusion and flow matching as one family (Gao et al., "Diffusion Meets Flow Matching: Two Sides of the Same Coin",
# diffusionflow.github.io, 2024; Kingma & Gao, "Understanding Diffusion Objectives", 2023): a data definition
# x_t = a_t x_0 + b_t eps plus a model definition (what the network predicts) give the sampler's update.


def estimates_from_velocity(xt: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From x_t = (1 - t) x_0 + t eps and v = eps - x_0:  x0_hat = x_t - t v,  eps_hat = x_t + (1 - t) v."""
    check_like("v", v, xt)
    tb = _bcast(check_flow_t(t, xt.shape[0]), xt)
    return xt - tb * v, xt + (1 - tb) * v


def unified_step(a_s: float | torch.Tensor, b_s: float | torch.Tensor, x0_hat: torch.Tensor,
                 eps_hat: torch.Tensor) -> torch.Tensor:
    """The deterministic update shared by DDIM (eta = 0) and flow Euler: re-noise the current estimates to the next
    noise level of the data definition x_s = a_s x_0 + b_s eps.
    DDIM: a = sqrt(abar), b = sqrt(1 - abar), model predicts eps.  Flow: a = 1 - t, b = t, model predicts v."""
    return a_s * x0_hat + b_s * eps_hat
