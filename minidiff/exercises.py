"""Exercise checks, and the builder of the student notebooks.

Checks: each `check_*` calls the learner's function on fixed inputs and compares it with the package's reference.
On a wrong answer it raises `CheckFailed` (an AssertionError) saying what went in, what was expected, what came back
and a hint; on a right one it prints a single deterministic line starting with ✅.

Student notebooks: `python -m minidiff.exercises build` copies every lesson notebooks/NN_*.ipynb to
notebooks/exercises/, replacing each region between `### BEGIN SOLUTION` and `### END SOLUTION` with
`raise NotImplementedError()` and clearing all outputs. `python -m minidiff.exercises check` exits 1 when the
committed student notebooks are out of date.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from . import ddim, ddpm, flow, guidance, schedules
from .models import dit, text, vae


class CheckFailed(AssertionError):
    """An exercise check found a wrong answer. The message says what was expected and gives a hint."""


def _call(fn: Callable, name: str, *args: Any) -> Any:
    if not callable(fn):
        raise CheckFailed(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        return fn(*args)
    except NotImplementedError:
        raise CheckFailed(
            f"{name} is still the stub: replace `raise NotImplementedError()` with your code, then run this cell again."
        ) from None
    except Exception as e:  # the learner's code crashed: say so clearly, without a deep traceback
        raise CheckFailed(f"{name} raised {type(e).__name__}: {e}") from None


def _as_tensor(out: Any, name: str, expected_shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CheckFailed(f"{name} should return a torch.Tensor, got {type(out).__name__}")
    if tuple(out.shape) != tuple(expected_shape):
        raise CheckFailed(f"{name} returned shape {tuple(out.shape)}, expected {tuple(expected_shape)}")
    return out.detach().cpu().double()


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    return bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def _ok(name: str, what: str) -> None:
    print(f"✅ {name}: {what}")


# ----------------------------------------------------------------------------------------------- lesson 01 checks


def check_forward_step(fn: Callable) -> None:
    """fn(x_prev, beta_t, noise) -> x_t = sqrt(1 - beta_t) x_prev + sqrt(beta_t) noise."""
    name = "forward_step"
    g = torch.Generator().manual_seed(101)
    cases = 0
    for beta in (0.02, 0.3, 0.9):
        x = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
        eps = torch.randn(x.shape, generator=g)
        got = _as_tensor(_call(fn, name, x.clone(), beta, eps.clone()), name, x.shape)
        want = ddpm.forward_step(x.double(), beta, eps.double())
        if not _close(got, want):
            a, b = (1 - beta) ** 0.5, beta**0.5
            if _close(got, a * x.double() + beta * eps.double()):
                hint = "the noise is scaled by sqrt(beta_t), not beta_t (variances add, standard deviations don't)"
            elif _close(got, (1 - beta) * x.double() + b * eps.double()):
                hint = "the signal is scaled by sqrt(1 - beta_t) = sqrt(alpha_t), not (1 - beta_t)"
            elif _close(got, a * x.double() + (1 - beta) ** 0.5 * eps.double()):
                hint = "the noise coefficient is sqrt(beta_t); you used sqrt(1 - beta_t)"
            else:
                hint = "x_t = sqrt(1 - beta_t) * x_prev + sqrt(beta_t) * noise"
            raise CheckFailed(
                f"{name}(x_prev, beta_t={beta}, noise) is wrong: max error {float((got - want).abs().max()):.3g}. "
                f"Hint: {hint}."
            )
        cases += 1
    _ok(name, f"matches x_t = sqrt(1-beta_t) x_(t-1) + sqrt(beta_t) eps for {cases} values of beta_t")


def check_linear_schedule(fn: Callable) -> None:
    """fn(T, beta_start, beta_end) -> betas, a 1-D tensor of length T from beta_start to beta_end, evenly spaced."""
    name = "linear_beta_schedule"
    cases = [(1000, 1e-4, 0.02), (10, 0.001, 0.1), (2, 0.01, 0.5)]
    for T, b0, b1 in cases:
        got = _as_tensor(_call(fn, name, T, b0, b1), name, (T,))
        want = schedules.linear_beta_schedule(T, b0, b1).double()
        if not _close(got, want, atol=1e-7, rtol=1e-5):
            if abs(float(got[0]) - b0) > 1e-7 or abs(float(got[-1]) - b1) > 1e-7:
                hint = (f"the first beta must be beta_start={b0} and the last beta_end={b1} "
                        f"(got {float(got[0]):.3g} .. {float(got[-1]):.3g})")
            else:
                hint = "the betas must be evenly spaced (torch.linspace)"
            raise CheckFailed(f"{name}(T={T}, beta_start={b0}, beta_end={b1}) is wrong. Hint: {hint}.")
    _ok(name, f"correct for T in {[c[0] for c in cases]}")


def check_closed_form_coefficients(fn: Callable) -> None:
    """fn(betas) -> (sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod)."""
    name = "closed_form_coefficients"
    for sched in ("linear", "cosine"):
        s = schedules.make_schedule(sched, 1000)
        out = _call(fn, name, s.betas.clone())
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise CheckFailed(f"{name} should return a pair (sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod)")
        a = _as_tensor(out[0], name + "[0]", (s.T,))
        b = _as_tensor(out[1], name + "[1]", (s.T,))
        if not _close(a, s.sqrt_alphas_cumprod, atol=1e-5):
            if _close(a, s.alphas.double().sqrt(), atol=1e-5):
                hint = "use the cumulative product of the alphas (torch.cumprod), not alpha_t itself"
            elif _close(a, s.alphas_cumprod, atol=1e-5):
                hint = "take the square root of alphas_cumprod"
            else:
                hint = "sqrt_alphas_cumprod_t = sqrt(prod_{s<=t} (1 - beta_s))"
            raise CheckFailed(f"{name}: the signal coefficient is wrong for the {sched} schedule. Hint: {hint}.")
        if not _close(b, s.sqrt_one_minus_alphas_cumprod, atol=1e-5):
            hint = "the noise coefficient is sqrt(1 - alphas_cumprod_t), so that signal^2 + noise^2 = 1"
            raise CheckFailed(f"{name}: the noise coefficient is wrong for the {sched} schedule. Hint: {hint}.")
    _ok(name, "both coefficients correct for the linear and cosine schedules")


def check_q_sample(fn: Callable) -> None:
    """fn(x0, t, noise, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod) -> x_t for a batch of different t."""
    name = "my_q_sample"
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 10, 250, 600, 999])
    got = _as_tensor(
        _call(fn, name, x0.clone(), t.clone(), noise.clone(), s.sqrt_alphas_cumprod.clone(),
              s.sqrt_one_minus_alphas_cumprod.clone()),
        name, x0.shape,
    )
    want = ddpm.q_sample(s, x0.double(), t, noise.double())
    if not _close(got, want):
        per = (got - want).flatten(1).abs().amax(1)
        wrong = [int(t[i]) for i in range(len(t)) if per[i] > 1e-4]
        raise CheckFailed(
            f"{name}: wrong x_t for t = {wrong} (batch t = {t.tolist()}). Hint: each sample uses its own t: "
            "index the coefficients with t, reshape them to (B, 1, 1, 1) and compute a * x0 + b * noise."
        )
    _ok(name, f"correct for a batch with t = {t.tolist()}")


# ----------------------------------------------------------------------------------------------- lesson 02 checks


def _reverse_inputs(seed: int = 11):
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(4, 1, 8, 8, generator=g) * 2 - 1).double()
    eps = torch.randn(x0.shape, generator=g).double()
    t = torch.tensor([1, 30, 400, 999])
    xt = ddpm.q_sample(s, x0, t, eps)
    return s, x0, eps, t, xt


def check_posterior(fn: Callable) -> None:
    """fn(schedule, x0, xt, t) -> (mean, variance) of q(x_{t-1} | x_t, x_0); variance broadcastable to x's shape."""
    name = "posterior_mean_variance"
    s, x0, _, t, xt = _reverse_inputs()
    out = _call(fn, name, s, x0.clone(), xt.clone(), t.clone())
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (mean, variance)")
    mean = _as_tensor(out[0], name + " mean", xt.shape)
    if not isinstance(out[1], torch.Tensor):
        raise CheckFailed(f"{name} should return the variance as a tensor, got {type(out[1]).__name__}")
    try:
        var = torch.broadcast_to(out[1].detach().double(), xt.shape)
    except RuntimeError:
        raise CheckFailed(f"{name}: the variance has shape {tuple(out[1].shape)}; it must broadcast to "
                          f"{tuple(xt.shape)} (use shape (B, 1, 1, 1))") from None
    want_mean, want_var = ddpm.q_posterior_mean_variance(s, x0, xt, t)
    # tolerances allow for float32 schedule values: 1 - alphas_cumprod[1] keeps only ~4 digits in float32
    if not _close(var, want_var.expand_as(xt), atol=1e-7, rtol=1e-3):
        if _close(var, torch.broadcast_to(s.betas.double()[t].reshape(-1, 1, 1, 1), xt.shape), atol=1e-7):
            hint = "that is beta_t; the posterior variance is beta_t (1 - abar_{t-1}) / (1 - abar_t)"
        else:
            hint = "variance = beta_t * (1 - alphas_cumprod_prev[t]) / (1 - alphas_cumprod[t])"
        raise CheckFailed(f"{name}: wrong variance for t = {t.tolist()}. Hint: {hint}.")
    if not _close(mean, want_mean, atol=2e-3, rtol=1e-3):
        raise CheckFailed(
            f"{name}: wrong mean for t = {t.tolist()}. Hint: mean = sqrt(abar_(t-1)) beta_t / (1 - abar_t) * x0 "
            "+ sqrt(alpha_t) (1 - abar_(t-1)) / (1 - abar_t) * xt, with every coefficient indexed by t and "
            "reshaped to (B, 1, 1, 1)."
        )
    _ok(name, f"mean and variance correct for t = {t.tolist()}")


def check_ddpm_loss(fn: Callable) -> None:
    """fn(model, schedule, x0, t, noise) -> L_simple = mean((noise - model(x_t, t))^2) with x_t = q_sample(...)."""
    name = "simple_loss"
    s, x0, eps, t, _ = _reverse_inputs(12)

    def model(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:  # a fixed, simple "network"
        return 0.5 * x + 0.001 * tt.reshape(-1, 1, 1, 1).to(x.dtype)

    out = _call(fn, name, model, s, x0.clone(), t.clone(), eps.clone())
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise CheckFailed(f"{name} should return a scalar tensor (use .mean()), got "
                          f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    xt = ddpm.q_sample(s, x0, t, eps)
    want = torch.mean((model(xt, t) - eps) ** 2)
    got = out.detach().double().reshape(())
    if not _close(got, want, atol=1e-6):
        if _close(got, torch.mean((model(xt, t) - x0) ** 2), atol=1e-6):
            hint = "the target is the noise eps, not x0 (we train an eps-predictor)"
        elif _close(got, torch.mean((model(x0, t) - eps) ** 2), atol=1e-6):
            hint = "feed the network the noisy x_t = q_sample(schedule, x0, t, noise), not x0"
        else:
            hint = "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; loss = mean((model(x_t, t) - noise)^2)"
        raise CheckFailed(f"{name}: got {float(got):.5f}, expected {float(want):.5f}. Hint: {hint}.")
    _ok(name, "L_simple correct on a fixed batch")


def check_ancestral_step(fn: Callable) -> None:
    """fn(schedule, eps, xt, t, noise) -> x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1-abar_t) eps) + sigma_t z."""
    name = "ancestral_step"
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(13)
    for t in (700, 5, 0):
        xt = torch.randn(3, 1, 8, 8, generator=g).double()
        eps = torch.randn(xt.shape, generator=g).double()
        z = torch.randn(xt.shape, generator=g).double()
        got = _as_tensor(_call(fn, name, s, eps.clone(), xt.clone(), t, z.clone()), name, xt.shape)
        want, _ = ddpm.p_sample(s, eps, xt, t, z, clip_denoised=False)
        if not _close(got, want, atol=1e-5):
            a, b, ab = float(s.alphas[t]), float(s.betas[t]), float(s.alphas_cumprod[t])
            mu = (xt - b / (1 - ab) ** 0.5 * eps) / a**0.5
            r = (got - mu).flatten()
            along_z = float(r @ z.flatten()) / (float(r.norm() * z.flatten().norm()) + 1e-12) > 0.999
            if t == 0 and along_z:
                hint = "at t = 0 return the mean only: no noise is added on the last step"
            elif t > 0 and _close(got, mu + b**0.5 * z, atol=1e-5):
                hint = ("you used sigma_t = sqrt(beta_t); this lesson uses the posterior variance "
                        "sigma_t^2 = posterior_variance[t] = beta_t (1 - abar_(t-1)) / (1 - abar_t)")
            elif t > 0 and _close(got, mu, atol=1e-5):
                hint = "add sigma_t * noise for t > 0 (sigma_t = sqrt(posterior_variance[t]))"
            else:
                hint = "mean = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t)"
            raise CheckFailed(f"{name}: wrong x_(t-1) at t = {t}. Hint: {hint}.")
    _ok(name, "x_(t-1) correct at t = 700, 5 and 0")


def check_predict_x0(fn: Callable) -> None:
    """fn(schedule, xt, t, eps) -> x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), one t per sample."""
    name = "predict_x0"
    s, x0, eps, t, xt = _reverse_inputs(14)
    got = _as_tensor(_call(fn, name, s, xt.clone(), t.clone(), eps.clone()), name, xt.shape)
    if not _close(got, x0, atol=1e-4, rtol=1e-3):
        per = (got - x0).flatten(1).abs().amax(1)
        wrong = [int(t[i]) for i in range(len(t)) if per[i] > 1e-3]
        raise CheckFailed(
            f"{name}: does not recover x0 for t = {wrong}. Hint: solve x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps "
            "for x0, with abar_t = alphas_cumprod[t] reshaped to (B, 1, 1, 1)."
        )
    _ok(name, f"recovers x0 exactly for t = {t.tolist()}")


# ----------------------------------------------------------------------------------------------- lesson 03 checks


def check_ddim_step(fn: Callable) -> None:
    """fn(schedule, eps, xt, t, t_prev, eta, noise) -> x_{t_prev} by DDIM, without clipping; t_prev = -1 means
    alphas_cumprod = 1 (the clean image)."""
    name = "ddim_update"
    s = schedules.make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(21)
    cases = [(900, 800, 0.0), (500, 300, 0.5), (300, 200, 1.0), (20, -1, 0.0)]
    for t, tp, eta in cases:
        xt = torch.randn(3, 1, 8, 8, generator=g).double()
        eps = torch.randn(xt.shape, generator=g).double()
        z = torch.randn(xt.shape, generator=g).double()
        got = _as_tensor(_call(fn, name, s, eps.clone(), xt.clone(), t, tp, eta, z.clone()), name, xt.shape)
        want, _ = ddim.ddim_step(s, eps, xt, t, tp, eta, z, clip_denoised=False)
        if not _close(got, want, atol=1e-4, rtol=1e-3):
            if tp == -1:
                hint = "for t_prev = -1 use alphas_cumprod_prev = 1: the result is just x0_hat"
            elif eta == 0:
                hint = ("x_prev = sqrt(abar_prev) * x0_hat + sqrt(1 - abar_prev) * eps, with "
                        "x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)")
            else:
                hint = ("sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev); the eps "
                        "direction becomes sqrt(1 - abar_prev - sigma^2) and sigma * noise is added")
            raise CheckFailed(f"{name}: wrong result for t={t}, t_prev={tp}, eta={eta}. Hint: {hint}.")
    _ok(name, f"correct for (t, t_prev, eta) in {cases}")


def check_ddim_timesteps(fn: Callable) -> None:
    """fn(T, steps) -> list of `steps` decreasing timesteps [(steps-1)*k, ..., k, 0], k = T // steps."""
    name = "make_timesteps"
    for T, steps in ((1000, 10), (1000, 50), (1000, 1000), (100, 7)):
        out = _call(fn, name, T, steps)
        got = [int(v) for v in (out.tolist() if isinstance(out, torch.Tensor) else out)]
        want = ddim.ddim_timesteps(T, steps)
        if got != want:
            if sorted(got) == want[::-1] and got != want:
                hint = "sampling goes from noise to data: the list must decrease (reverse it)"
            elif len(got) != steps:
                hint = f"return exactly {steps} timesteps"
            else:
                hint = f"use multiples of T // steps = {T // steps}, starting from 0"
            raise CheckFailed(f"{name}(T={T}, steps={steps}) = {got[:6]}..., expected {want[:6]}... Hint: {hint}.")
    _ok(name, "correct for T=1000 with 10, 50, 1000 steps and T=100 with 7")


def check_slerp(fn: Callable) -> None:
    """fn(z0, z1, alpha) -> spherical interpolation, per sample."""
    name = "my_slerp"
    g = torch.Generator().manual_seed(22)
    z0, z1 = torch.randn(4, 1, 8, 8, generator=g).double(), torch.randn(4, 1, 8, 8, generator=g).double()
    for a in (0.0, 0.3, 0.5, 1.0):
        got = _as_tensor(_call(fn, name, z0.clone(), z1.clone(), a), name, z0.shape)
        want = ddim.slerp(z0, z1, a)
        if not _close(got, want, atol=1e-4, rtol=1e-3):
            if _close(got, (1 - a) * z0 + a * z1, atol=1e-4):
                hint = "that is linear interpolation; slerp weights are sin((1-a) w)/sin(w) and sin(a w)/sin(w)"
            else:
                hint = ("w = arccos(<z0, z1> / (|z0| |z1|)) computed per sample over all pixels "
                        "(flatten from dim 1), reshaped to (B, 1, 1, 1)")
            raise CheckFailed(f"{name}: wrong at alpha={a}. Hint: {hint}.")
    _ok(name, "matches spherical interpolation at alpha = 0, 0.3, 0.5, 1")


# ----------------------------------------------------------------------------------------------- lesson 04 checks


def _toy_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth, time-dependent velocity field used by the checks (t arrives as t * 1000)."""
    tt = (t / 1000).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return torch.tanh(x) * (0.5 + tt) - 0.3 * x.roll(1, dims=-1)


def check_velocity_loss(fn: Callable) -> None:
    """fn(model, x0, noise, t) -> mean((model(x_t, t * 1000) - (noise - x0))^2), x_t = (1 - t) x0 + t noise."""
    name = "velocity_loss"
    g = torch.Generator().manual_seed(31)
    x0, noise = torch.randn(64, 2, generator=g).double(), torch.randn(64, 2, generator=g).double()
    t = torch.rand(64, generator=g).double()
    out = _call(fn, name, _toy_field, x0.clone(), noise.clone(), t.clone())
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise CheckFailed(f"{name} should return a scalar tensor (use .mean())")
    xt = flow.interpolate(x0, noise, t)
    want = torch.mean((_toy_field(xt, t * 1000) - (noise - x0)) ** 2)
    got = out.detach().double().reshape(())
    if not _close(got, want, atol=1e-6):
        if _close(got, torch.mean((_toy_field(xt, t * 1000) - (x0 - noise)) ** 2), atol=1e-6):
            hint = "the velocity points from data to noise: v = noise - x0 (t = 1 is noise)"
        elif _close(got, torch.mean((_toy_field(xt, t) - (noise - x0)) ** 2), atol=1e-6):
            hint = "give the model t * 1000, the timestep scale its embedding expects"
        elif _close(got, torch.mean((_toy_field(t.reshape(-1, 1) * x0 + (1 - t.reshape(-1, 1)) * noise, t * 1000)
                                     - (noise - x0)) ** 2), atol=1e-6):
            hint = "x_t = (1 - t) x0 + t noise: at t = 1 it must be pure noise"
        else:
            hint = ("x_t = (1 - t) x0 + t noise (t reshaped to (B, 1)); "
                    "loss = mean((model(x_t, t*1000) - (noise - x0))^2)")
        raise CheckFailed(f"{name}: got {float(got):.5f}, expected {float(want):.5f}. Hint: {hint}.")
    _ok(name, "matches the flow-matching loss on a fixed batch")


def check_euler_sampler(fn: Callable) -> None:
    """fn(model, x1, steps) -> x at t = 0, integrating dx/dt = model(x, t * 1000) from t = 1 with uniform steps."""
    name = "euler_sampler"
    g = torch.Generator().manual_seed(32)
    x1 = torch.randn(16, 2, generator=g).double()
    for steps in (1, 4, 25):
        got = _as_tensor(_call(fn, name, _toy_field, x1.clone(), steps), name, x1.shape)
        want = flow.euler_sample(_toy_field, tuple(x1.shape), steps=steps, x_1=x1, progress=False).double()
        if not _close(got, want, atol=1e-5, rtol=1e-4):
            backwards = x1.clone()
            for i in range(steps):
                t_cur, t_next = 1 - i / steps, 1 - (i + 1) / steps
                backwards = backwards + (t_cur - t_next) * _toy_field(backwards, torch.full((16,), t_cur * 1000))
            if _close(got, backwards, atol=1e-5):
                hint = "time runs from 1 down to 0, so each step adds (t_next - t_cur) * v, a negative multiple"
            else:
                hint = ("t = linspace(1, 0, steps + 1); for each i: x = x + (t[i+1] - t[i]) * model(x, t[i] * 1000), "
                        "evaluating the model at the current time t[i]")
            raise CheckFailed(f"{name}: wrong result with {steps} steps. Hint: {hint}.")
    _ok(name, "matches Euler integration from t = 1 to 0 with 1, 4 and 25 steps")


def check_estimates_from_velocity(fn: Callable) -> None:
    """fn(xt, v, t) -> (x0_hat, eps_hat) with x_t = (1 - t) x0 + t eps and v = eps - x0."""
    name = "estimates_from_velocity"
    g = torch.Generator().manual_seed(33)
    x0, eps = torch.randn(5, 1, 4, 4, generator=g).double(), torch.randn(5, 1, 4, 4, generator=g).double()
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    xt, v = flow.interpolate(x0, eps, t), flow.velocity_target(x0, eps)
    out = _call(fn, name, xt.clone(), v.clone(), t.clone())
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (x0_hat, eps_hat)")
    a = _as_tensor(out[0], name + " x0_hat", xt.shape)
    b = _as_tensor(out[1], name + " eps_hat", xt.shape)
    if not _close(a, x0, atol=1e-6):
        raise CheckFailed(f"{name}: x0_hat does not recover x0. Hint: x_t - t v = (1-t) x0 + t eps - t eps + t x0.")
    if not _close(b, eps, atol=1e-6):
        raise CheckFailed(f"{name}: eps_hat does not recover eps. Hint: eps = x0 + v, so eps_hat = x0_hat + v.")
    _ok(name, "recovers x0 and eps exactly for t = 0, 0.1, 0.5, 0.9, 1")


# ----------------------------------------------------------------------------------------------- lesson 05 checks


def check_patchify(fn: Callable) -> None:
    """fn(x, p): (B, C, H, W) -> (B, N, p*p*C), patches in raster order, each flattened as (row, column, channel)."""
    name = "patchify"
    g = torch.Generator().manual_seed(51)
    for shape, p in [((2, 1, 16, 16), 2), ((1, 3, 8, 12), 4), ((1, 2, 6, 6), 3), ((1, 1, 4, 4), 1)]:
        x = torch.randn(shape, generator=g)
        want = dit.patchify(x, p)
        out = _as_tensor(_call(fn, name, x.clone(), p), f"{name}(x of shape {shape}, p={p})", tuple(want.shape))
        if _close(out, want, atol=0, rtol=0):
            continue
        same_tokens = _close(out.sort(dim=-1).values, want.double().sort(dim=-1).values, atol=0, rtol=0)
        hint = ("each token holds the right pixels but in another order: flatten a patch as (row, column, channel), "
                "i.e. permute to (B, H/p, W/p, p, p, C) before the last reshape" if same_tokens else
                "reshape to (B, C, H/p, p, W/p, p), move the two grid axes to the front, then flatten each patch")
        raise CheckFailed(f"{name}: wrong tokens for x of shape {shape} with p={p}. Hint: {hint}.")
    _ok(name, "matches minidiff's patchify for 4 image and patch sizes (C = 1, 2, 3; p = 1 to 4)")


def check_unpatchify(fn: Callable) -> None:
    """fn(tokens, p, h, w, c): the exact inverse of patchify."""
    name = "unpatchify"
    g = torch.Generator().manual_seed(52)
    for shape, p in [((2, 1, 16, 16), 2), ((1, 3, 8, 12), 4), ((1, 2, 6, 6), 3)]:
        x = torch.randn(shape, generator=g)
        tokens = dit.patchify(x, p)
        b, c, h, w = shape
        out = _as_tensor(_call(fn, name, tokens.clone(), p, h, w, c), f"{name}(p={p}, {h}x{w}, C={c})", shape)
        if not _close(out, x, atol=0, rtol=0):
            hint = ("the values are all there but misplaced: reshape to (B, H/p, W/p, p, p, C) and permute to "
                    "(B, C, H/p, p, W/p, p) before the final reshape" if _close(out.flatten().sort().values,
                                                                                x.double().flatten().sort().values,
                                                                                atol=0, rtol=0)
                    else "undo patchify's steps in reverse order")
            raise CheckFailed(f"{name}: unpatchify(patchify(x)) != x for x of shape {shape}, p={p}. Hint: {hint}.")
    _ok(name, "unpatchify(patchify(x)) == x exactly for 3 image and patch sizes")


def check_modulate(fn: Callable) -> None:
    """fn(x, shift, scale) = x * (1 + scale) + shift, with (B, D) shift/scale broadcast over the N tokens of x."""
    name = "modulate"
    g = torch.Generator().manual_seed(53)
    x, shift, scale = torch.randn(3, 5, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    want = dit.modulate(x, shift, scale)
    out = _as_tensor(_call(fn, name, x.clone(), shift.clone(), scale.clone()), name, tuple(x.shape))
    if _close(out, want):
        zero = _as_tensor(_call(fn, name, x.clone(), torch.zeros(3, 8), torch.zeros(3, 8)), name, tuple(x.shape))
        if _close(zero, x):
            _ok(name, "x * (1 + scale) + shift per image, and the identity when shift = scale = 0")
            return
    if _close(out, x * scale[:, None] + shift[:, None]):
        raise CheckFailed(f"{name}: got x * scale + shift. Hint: adaLN-Zero needs the identity when scale = 0, so "
                          "use (1 + scale).")
    raise CheckFailed(f"{name}: wrong result for x (3, 5, 8), shift and scale (3, 8). Hint: give shift and scale a "
                      "token axis with .unsqueeze(1) so each image's values apply to all its tokens.")


def check_cfg_combine(fn: Callable) -> None:
    """fn(cond, uncond, scale) = uncond + scale * (cond - uncond)."""
    name = "cfg_combine"
    g = torch.Generator().manual_seed(54)
    cond, uncond = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    for scale in (0.0, 1.0, 2.5, 5.0):
        want = guidance.cfg_combine(cond, uncond, scale)
        out = _as_tensor(_call(fn, name, cond.clone(), uncond.clone(), scale), f"{name}(scale={scale})",
                         tuple(cond.shape))
        if not _close(out, want):
            if _close(out, cond + scale * (uncond - cond)):
                hint = "cond and uncond are swapped: start from the unconditional prediction"
            elif _close(out, scale * cond):
                hint = "scale * cond only stretches the prediction; guidance extrapolates from uncond towards cond"
            else:
                hint = "scale = 1 must give cond and scale = 0 must give uncond"
            raise CheckFailed(f"{name}: wrong result with scale {scale}. Hint: {hint}.")
    _ok(name, "uncond + scale * (cond - uncond) for scales 0, 1, 2.5 and 5")


# ----------------------------------------------------------------------------------------------- lesson 06 checks


def check_reparameterize(fn: Callable) -> None:
    """fn(mean, logvar, noise) -> z = mean + exp(logvar / 2) * noise."""
    name = "reparameterize"
    g = torch.Generator().manual_seed(61)
    mean, logvar, noise = (torch.randn(4, 3, 2, 5, 5, generator=g) for _ in range(3))
    out = _as_tensor(_call(fn, name, mean.clone(), logvar.clone(), noise.clone()), name, tuple(mean.shape))
    if _close(out, vae.reparameterize(mean, logvar, noise)):
        _ok(name, "z = mean + exp(logvar / 2) * noise, elementwise, for latents of shape (4, 3, 2, 5, 5)")
        return
    m, lv, e = mean.double(), logvar.double(), noise.double()
    if _close(out, m + lv.exp() * e):
        hint = "exp(logvar) is the variance; multiply the noise by the standard deviation exp(logvar / 2)"
    elif _close(out, m + lv * e) or _close(out, m + (0.5 * lv) * e):
        hint = "logvar is a log: the standard deviation is exp(logvar / 2), not logvar itself"
    elif _close(out, m + lv.exp().sqrt()):
        hint = "you forgot the noise: z must be random, mean + sigma * noise"
    else:
        hint = "z = mean + sigma * noise with sigma = exp(0.5 * logvar)"
    raise CheckFailed(f"{name}: wrong z. Hint: {hint}.")


def check_kl_divergence(fn: Callable) -> None:
    """fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, 1)) per element, same shape as mean."""
    name = "kl_divergence"
    g = torch.Generator().manual_seed(62)
    mean, logvar = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g)
    out = _as_tensor(_call(fn, name, mean.clone(), logvar.clone()), name, tuple(mean.shape))
    m, lv = mean.double(), logvar.double()
    if _close(out, vae.kl_divergence(m, lv)):
        zero = _as_tensor(_call(fn, name, torch.zeros(2, 3), torch.zeros(2, 3)), name, (2, 3))
        if _close(zero, torch.zeros(2, 3)):
            _ok(name, "0.5 (mean^2 + exp(logvar) - 1 - logvar) per element; 0 exactly when q = N(0, 1)")
            return
    if _close(out, m.pow(2) + lv.exp() - 1 - lv):
        hint = "missing the factor 0.5 in front"
    elif _close(out, 0.5 * (m.pow(2) + lv.exp() - 1 + lv)):
        hint = "the sign of the logvar term: KL = 0.5 (mean^2 + var - 1 - log var)"
    elif _close(out, 0.5 * (m.pow(2) + lv - 1 - lv.exp())):
        hint = "logvar and var are swapped: var = exp(logvar)"
    elif out.numel() and not bool((out >= -1e-9).all()):
        hint = "a KL divergence is never negative; some of your values are"
    else:
        hint = "KL = 0.5 (mean^2 + exp(logvar) - 1 - logvar), elementwise, without summing"
    raise CheckFailed(f"{name}: wrong KL for mean, logvar of shape (3, 4, 6). Hint: {hint}.")


def check_causal_pad(fn: Callable) -> None:
    """fn(x, time_pad) -> (B, C, time_pad + T, H, W): time_pad copies of frame 0 in front of the video."""
    name = "causal_pad"
    g = torch.Generator().manual_seed(63)
    for shape, pad in [((2, 3, 5, 4, 4), 2), ((1, 2, 1, 3, 3), 2), ((1, 1, 9, 2, 2), 1), ((1, 1, 3, 2, 2), 0)]:
        x = torch.randn(shape, generator=g)
        want = vae.causal_pad(x, pad)
        out = _as_tensor(_call(fn, name, x.clone(), pad), f"{name}(x of shape {shape}, time_pad={pad})",
                         tuple(want.shape))
        if _close(out, want, atol=0, rtol=0):
            continue
        xd = x.double()
        if pad and _close(out, torch.cat([xd, xd[:, :, -1:].expand(-1, -1, pad, -1, -1)], 2)):
            hint = "you padded the future side: the copies go in front (before frame 0), not after the last frame"
        elif pad and _close(out, torch.cat([torch.zeros_like(xd[:, :, :pad]), xd], 2)):
            hint = "zeros would also be causal, but here we repeat frame 0 (x[:, :, :1]) so a still video stays still"
        elif pad and _close(out, torch.cat([xd[:, :, :pad], xd], 2)):
            hint = "those are frames 0..time_pad-1; repeat frame 0 itself, time_pad times"
        else:
            hint = "torch.cat([x[:, :, :1].expand(-1, -1, time_pad, -1, -1), x], dim=2) (time is dim 2)"
        raise CheckFailed(f"{name}: wrong result for x of shape {shape} with time_pad={pad}. Hint: {hint}.")
    _ok(name, "frame 0 repeated in front, for 4 video shapes and time_pad = 0, 1, 2")


# ----------------------------------------------------------------------------------------------- lesson 07 checks


def _vocab() -> dict[str, int]:
    from .data import caption_words

    return {w: i for i, w in enumerate(list(text.SPECIAL_TOKENS) + sorted(caption_words()))}


def check_prompt_to_ids(fn: Callable) -> None:
    """fn(prompt, vocab, max_length) -> list of max_length ids: [BOS] words [EOS] [PAD]..., matching the tokenizer."""
    name = "prompt_to_ids"
    vocab = _vocab()
    tok = text.build_tokenizer([w for w in vocab if w not in text.SPECIAL_TOKENS], max_length=8)
    for prompt in ("a red 3 moving left", "Blue 7", "moving up", ""):
        want = text.tokenize(tok, [prompt])[0][0].tolist()
        out = _call(fn, name, prompt, dict(vocab), 8)
        if isinstance(out, torch.Tensor):
            out = out.tolist()
        if not isinstance(out, (list, tuple)) or [int(i) for i in out] != want:
            got = list(out) if isinstance(out, (list, tuple)) else out
            ids = [vocab[w] for w in prompt.lower().split()]
            if isinstance(got, list) and got[:len(ids)] == ids:
                hint = "start with the [BOS] id, then the words, then [EOS]"
            elif isinstance(got, list) and len(got) != 8:
                hint = f"pad with the [PAD] id up to max_length = 8 (you returned {len(got)} ids)"
            elif prompt != prompt.lower():
                hint = "lower-case the prompt first: the vocabulary is lower case"
            else:
                hint = "[BOS] + one id per word + [EOS], then [PAD] until the list has max_length ids"
            raise CheckFailed(f"{name}({prompt!r}): expected {want}, got {got}. Hint: {hint}.")
    _ok(name, "matches the Hugging Face tokenizer on 4 prompts, including the empty one")


def check_pool_at_eos(fn: Callable) -> None:
    """fn(hidden, input_ids, eos_token_id) -> (B, D): each prompt's hidden state at its [EOS] token."""
    name = "pool_at_eos"
    g = torch.Generator().manual_seed(71)
    vocab = _vocab()
    tok = text.build_tokenizer([w for w in vocab if w not in text.SPECIAL_TOKENS], max_length=8)
    ids, _ = text.tokenize(tok, ["a red 3 moving left", "green 9", "", "a 1 moving up"])
    hidden = torch.randn(4, 8, 6, generator=g)
    eos = vocab["[EOS]"]
    want = text.pool_at_eos(hidden, ids, eos)
    out = _as_tensor(_call(fn, name, hidden.clone(), ids.clone(), eos), name, tuple(want.shape))
    if _close(out, want):
        _ok(name, "picks the [EOS] hidden state of prompts with 0 to 5 words")
        return
    h = hidden.double()
    if _close(out, h[:, -1]):
        hint = "the last position is padding for short prompts; find where input_ids == eos_token_id"
    elif _close(out, h.mean(1)):
        hint = "that is mean pooling over all positions, padding included; CLIP takes the [EOS] position"
    elif _close(out, h[:, 0]):
        hint = "position 0 is [BOS], which (causal attention) has seen nothing of the prompt"
    else:
        hint = "index hidden[b, position of [EOS] in input_ids[b]] for each b"
    raise CheckFailed(f"{name}: wrong pooled vectors for 4 prompts. Hint: {hint}.")


def check_clip_loss(fn: Callable) -> None:
    """fn(text_emb, video_emb, logit_scale) -> CLIP's symmetric cross-entropy over cosine similarities."""
    name = "clip_loss"
    g = torch.Generator().manual_seed(72)
    for b, d, scale in [(6, 8, 10.0), (4, 5, 1.0)]:
        t, v = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        want = text.clip_loss(t, v, scale)
        out = _call(fn, name, t.clone(), v.clone(), scale)
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise CheckFailed(f"{name} should return a scalar tensor, got {out!r:.80}")
        out = out.detach().double().reshape(())
        if _close(out, want.double()):
            continue
        tn, vn = torch.nn.functional.normalize(t.double(), dim=-1), torch.nn.functional.normalize(v.double(), dim=-1)
        target = torch.arange(b)
        ce = torch.nn.functional.cross_entropy
        raw = scale * t.double() @ v.double().T
        if _close(out, (ce(raw, target) + ce(raw.T, target)) / 2):
            hint = "normalise both embeddings to unit length first (cosine similarity)"
        elif _close(out, ce(scale * tn @ vn.T, target)):
            hint = "CLIP's loss is symmetric: average the text->video and the video->text cross-entropies"
        elif _close(out, (ce(tn @ vn.T, target) + ce(vn @ tn.T, target)) / 2):
            hint = "multiply the similarities by logit_scale (1 / temperature) before the cross-entropy"
        else:
            hint = "logits = logit_scale * t @ v.T of the normalised embeddings; targets arange(B); both directions"
        raise CheckFailed(f"{name}: wrong loss for B={b}, D={d}, logit_scale={scale}. Hint: {hint}.")
    _ok(name, "matches the symmetric contrastive loss for 2 batch sizes and temperatures")


# ---------------------------------------------------------------------------------------------- student notebooks

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError()"
STUDENT_NOTE = (
    "> **Student version.** Fill in each cell marked `# YOUR CODE HERE` (delete the `raise NotImplementedError()`),\n"
    "> then run the check cell below it: it prints ✅ or tells you what is wrong. The lesson always goes on with\n"
    "> minidiff's own version of each piece, so you can skip an exercise and still run the whole notebook."
)


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region by `# YOUR CODE HERE` + `raise NotImplementedError()`, same indent."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested '### BEGIN SOLUTION'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + "# YOUR CODE HERE", indent + STUB]
        elif stripped == END:
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def build_student_notebook(nb):  # nbformat.NotebookNode -> NotebookNode
    """The student version of a lesson notebook: solutions stripped, outputs cleared, a note on top."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def _poll_in_slices(channel: Any, interval: float) -> None:
    """Make channel.get_msg(timeout) wait in slices of `interval` seconds instead of one long wait."""
    import inspect
    import time
    from queue import Empty

    original = channel.get_msg

    async def get_msg(timeout: float | None = None, **kw: Any) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            try:
                msg = original(timeout=step, **kw)
                return await msg if inspect.isawaitable(msg) else msg
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def execute_notebook(nb, cwd: str, timeout: int | None = None, allow_errors: bool = False):
    """Execute a notebook (nbformat.NotebookNode, in place) in a fresh kernel with nbclient; returns it.

    The kernel's reply and output channels are polled in 1-second slices rather than with one long wait. We saw rare
    stalls right after widget cells in which the kernel was idle, its reply already sent, and the client still
    waiting (cf. jupyter/nbclient#312); a fresh poll picks up a message a long wait has missed.
    """
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        async def async_start_new_kernel_client(self):  # type: ignore[override]
            kc = await super().async_start_new_kernel_client()
            _poll_in_slices(self.kc.shell_channel, 1.0)
            _poll_in_slices(self.kc.iopub_channel, 1.0)
            return kc

    client = _Client(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def lesson_notebooks(root: str = "notebooks") -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(root, "[0-9][0-9]_*.ipynb")))


def student_text(lesson_path: str) -> str:
    import nbformat

    nb = nbformat.read(lesson_path, as_version=4)
    return nbformat.writes(build_student_notebook(nb), version=4) + "\n"


def build(root: str = "notebooks", check_only: bool = False) -> list[str]:
    """Write (or, with check_only, compare) notebooks/exercises/NN_*.ipynb; return the paths that differ."""
    out_dir = os.path.join(root, "exercises")
    os.makedirs(out_dir, exist_ok=True)
    differ = []
    for path in lesson_notebooks(root):
        target = os.path.join(out_dir, os.path.basename(path))
        text = student_text(path)
        old = open(target, encoding="utf-8").read() if os.path.exists(target) else None
        if old != text:
            differ.append(target)
            if not check_only:
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
    return differ


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.exercises", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["build", "check"], help="build: write student notebooks; check: verify")
    p.add_argument("--root", default="notebooks", help="folder with the lesson notebooks (default: notebooks)")
    a = p.parse_args(argv)
    if not lesson_notebooks(a.root):
        print(f"no lesson notebooks (NN_*.ipynb) in {a.root!r}; run this from the project root", file=sys.stderr)
        return 2
    differ = build(a.root, check_only=a.command == "check")
    if a.command == "check":
        for d in differ:
            print(f"out of date: {d} (run: python -m minidiff.exercises build)")
        return 1 if differ else 0
    for d in differ:
        print(f"wrote {d}")
    if not differ:
        print("student notebooks already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(_main())

