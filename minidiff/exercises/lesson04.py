"""Checks for lesson 04 (flow matching)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import flow
from ._common import CheckFailed, as_tensor, call, close, ok


def _toy_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed, smooth, time-dependent velocity field used by the checks (t in [0, 1], as every model takes it)."""
    t_b = t.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return torch.tanh(x) * (0.5 + t_b) - 0.3 * x.roll(1, dims=-1)


def check_velocity_loss(fn: Callable) -> None:
    """fn(model, x0, noise, t) -> mean((model(x_t, t) - (noise - x0))^2), x_t = (1 - t) x0 + t noise."""
    name = "velocity_loss"
    g = torch.Generator().manual_seed(31)
    x0, noise = torch.randn(64, 2, generator=g).double(), torch.randn(64, 2, generator=g).double()
    t = torch.rand(64, generator=g).double()
    t[:2] = torch.tensor([0.0, 1.0])  # the two ends: pure data and pure noise
    out = call(fn, name, _toy_field, x0.clone(), noise.clone(), t.clone())
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise CheckFailed(f"{name} should return a scalar tensor (use .mean())")
    xt = flow.interpolate(x0, noise, t)
    want = torch.mean((_toy_field(xt, t) - (noise - x0)) ** 2)
    got = out.detach().double().reshape(())
    if not close(got, want, atol=1e-6):
        if close(got, torch.mean((_toy_field(xt, t) - (x0 - noise)) ** 2), atol=1e-6):
            hint = "the velocity points from data to noise: v = noise - x0 (t = 1 is noise)"
        elif close(got, torch.mean((_toy_field(xt, t * 1000) - (noise - x0)) ** 2), atol=1e-6):
            hint = "give the model t itself, in [0, 1]: the model scales it for its embedding (time_factor)"
        elif close(got, torch.mean((_toy_field(t.reshape(-1, 1) * x0 + (1 - t.reshape(-1, 1)) * noise, t)
                                    - (noise - x0)) ** 2), atol=1e-6):
            hint = "x_t = (1 - t) x0 + t noise: at t = 1 it must be pure noise"
        else:
            hint = ("x_t = (1 - t) x0 + t noise (t reshaped to (B, 1)); "
                    "loss = mean((model(x_t, t) - (noise - x0))^2)")
        raise CheckFailed(f"{name}: got {float(got):.5f}, expected {float(want):.5f}. Hint: {hint}.")
    ok(name, "matches the flow-matching loss on a fixed batch")


def check_euler_sampler(fn: Callable) -> None:
    """fn(model, x1, steps) -> x at t = 0, integrating dx/dt = model(x, t) from t = 1 with uniform steps."""
    name = "euler_sampler"
    g = torch.Generator().manual_seed(32)
    x1 = torch.randn(16, 2, generator=g).double()
    for steps in (1, 4, 25):
        got = as_tensor(call(fn, name, _toy_field, x1.clone(), steps), name, x1.shape)
        want = flow.euler_sample(_toy_field, tuple(x1.shape), steps=steps, noise=x1, progress=False).double()
        if not close(got, want, atol=1e-5, rtol=1e-4):
            backwards = x1.clone()
            for i in range(steps):
                t_cur, t_next = 1 - i / steps, 1 - (i + 1) / steps
                backwards = backwards + (t_cur - t_next) * _toy_field(backwards, torch.full((16,), t_cur))
            if close(got, backwards, atol=1e-5):
                hint = "time runs from 1 down to 0, so each step adds (t_next - t_cur) * v, a negative multiple"
            else:
                hint = ("t = linspace(1, 0, steps + 1); for each i: x = x + (t[i+1] - t[i]) * model(x, t_i) with "
                        "t_i = t[i] repeated over the batch, evaluating the model at the current time t[i]")
            raise CheckFailed(f"{name}: wrong result with {steps} steps. Hint: {hint}.")
    ok(name, "matches Euler integration from t = 1 to 0 with 1, 4 and 25 steps")


def check_estimates_from_velocity(fn: Callable) -> None:
    """fn(xt, v, t) -> (x0_hat, eps_hat) with x_t = (1 - t) x0 + t eps and v = eps - x0."""
    name = "estimates_from_velocity"
    g = torch.Generator().manual_seed(33)
    x0, eps = torch.randn(5, 1, 4, 4, generator=g).double(), torch.randn(5, 1, 4, 4, generator=g).double()
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    xt, v = flow.interpolate(x0, eps, t), flow.velocity_target(x0, eps)
    out = call(fn, name, xt.clone(), v.clone(), t.clone())
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (x0_hat, eps_hat)")
    a = as_tensor(out[0], name + " x0_hat", xt.shape)
    b = as_tensor(out[1], name + " eps_hat", xt.shape)
    if not close(a, x0, atol=1e-6):
        raise CheckFailed(f"{name}: x0_hat does not recover x0. Hint: x_t - t v = (1-t) x0 + t eps - t eps + t x0.")
    if not close(b, eps, atol=1e-6):
        raise CheckFailed(f"{name}: eps_hat does not recover eps. Hint: eps = x0 + v, so eps_hat = x0_hat + v.")
    ok(name, "recovers x0 and eps exactly for t = 0, 0.1, 0.5, 0.9, 1")


def _heun_variant(model: Callable, x1: torch.Tensor, steps: int, *, correct: bool = True, last: bool = False,
                  t2: str = "next", mix: str = "mean", start: str = "x") -> torch.Tensor:
    """Heun's sampler on the uniform grid with one thing changed: the likely mistakes the check names."""
    ts = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    x = x1.clone()
    for i in range(steps):
        t_cur, t_next = float(ts[i]), float(ts[i + 1])
        dt = t_next - t_cur
        v1 = model(x, torch.full((len(x),), t_cur))
        x_pred = x + dt * v1
        if not correct or (t_next == 0 and not last):
            x = x_pred
            continue
        v2 = model(x_pred, torch.full((len(x),), t_next if t2 == "next" else t_cur))
        slope = (v1 + v2) / 2 if mix == "mean" else v2
        x = (x if start == "x" else x_pred) + dt * slope
    return x


def check_heun_sampler(fn: Callable) -> None:
    """fn(model, x1, steps) -> x at t = 0 by Heun's method on linspace(1, 0, steps + 1), the last step plain Euler."""
    name = "heun_sampler"
    g = torch.Generator().manual_seed(34)
    x1 = torch.randn(16, 2, generator=g).double()
    for steps in (1, 3, 10):
        calls: list[int] = []

        def model(x: torch.Tensor, t: torch.Tensor, calls: list[int] = calls) -> torch.Tensor:
            calls.append(1)
            return _toy_field(x, t)

        got = as_tensor(call(fn, name, model, x1.clone(), steps), f"{name}(model, x1, steps={steps})", x1.shape)
        want = flow.heun_sample(_toy_field, tuple(x1.shape), steps=steps, noise=x1, progress=False).double()
        if close(got, want, atol=1e-5, rtol=1e-4):
            continue
        suspects = [
            (dict(correct=False), "that is Euler's method: after the Euler prediction x_pred, evaluate the slope "
                                  "v2 = model(x_pred, t_next) and step from x with the mean slope (v1 + v2) / 2"),
            (dict(last=True), "on the last step (t_next = 0) keep the plain Euler step, as EDM and diffusers' "
                              "FlowMatchHeunDiscreteScheduler do: the correction there is skipped"),
            (dict(t2="cur"), "evaluate the second slope at the end of the step: model(x_pred, t_next), not t_cur"),
            (dict(mix="v2"), "average the two slopes, (v1 + v2) / 2: the slope at the end alone is a backward Euler "
                             "guess, still first order"),
            (dict(start="pred"), "the corrected step starts again from x (the start of the step), not from x_pred"),
        ]
        hint = next((h for kw, h in suspects if close(got, _heun_variant(_toy_field, x1, steps, **kw), atol=1e-5,
                                                      rtol=1e-4)), None)
        if hint is None:
            hint = ("for each step: v1 = model(x, t_cur); x_pred = x + (t_next - t_cur) v1; unless t_next = 0: "
                    "v2 = model(x_pred, t_next) and x = x + (t_next - t_cur) (v1 + v2) / 2; else x = x_pred")
        raise CheckFailed(f"{name}: wrong result with {steps} step{'s' * (steps > 1)} ({len(calls)} model calls; "
                          f"Heun makes {2 * steps - 1}). Hint: {hint}.")
    ok(name, "matches Heun's method (last step Euler) from t = 1 to 0 with 1, 3 and 10 steps")


def check_time_shift(fn: Callable) -> None:
    """fn(gamma, t) -> t' = gamma t / (1 + (gamma - 1) t), elementwise, for a tensor t in [0, 1]."""
    name = "time_shift"
    t = torch.linspace(0, 1, 11, dtype=torch.float64).float()
    for gamma in (3.0, 1.0, 0.5, 1.56):
        want = flow.time_shift(gamma, t)
        got = as_tensor(call(fn, name, gamma, t.clone()), f"{name}({gamma}, t)", tuple(t.shape))
        if close(got, want):
            continue
        td = t.double()
        suspects = [
            (td / (gamma - (gamma - 1) * td), "that is the inverse shift: gamma > 1 must move every t towards the "
                                             "noisy end, t' >= t"),
            (gamma * td / (1 + gamma * td), "the shifted grid must still end where it started: t = 1 (pure noise) "
                                            "has to stay 1"),
            (gamma * td, "t' must stay in [0, 1]: the shift is a ratio that bends the interval, not a stretch"),
            (td, "t came back unchanged: for gamma other than 1 every t strictly between 0 and 1 must move"),
        ]
        hint = next((h for alt, h in suspects if close(got, alt)), None) or (
            "t' is a ratio: gamma t over one plus (gamma - 1) t; it keeps 0 and 1 and moves everything between")
        raise CheckFailed(f"{name}: wrong t' for gamma = {gamma} (t = 0, 0.1, ..., 1). Hint: {hint}.")
    ok(name, "gamma t / (1 + (gamma - 1) t) for gamma = 3, 1, 0.5 and 1.56; 0 and 1 stay where they are")
