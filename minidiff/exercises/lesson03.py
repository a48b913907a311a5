"""Checks for lesson 03 (DDIM)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import ddim, ddpm, schedules
from ._common import CheckFailed, as_int_list, as_tensor, call, close, ok, random_unet


def check_ddim_step(fn: Callable) -> None:
    """fn(schedule, eps, xt, t, t_prev, eta, noise) -> x_{t_prev} by DDIM, without clipping; t_prev = -1 means
    alphas_cumprod = 1 (the clean image)."""
    name = "ddim_update"
    s = schedules.make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(21)
    cases = [(999, 899, 0.0), (900, 800, 0.0), (500, 300, 0.5), (300, 200, 1.0), (20, -1, 0.0), (0, -1, 1.0)]
    for t, tp, eta in cases:
        xt = torch.randn(3, 1, 8, 8, generator=g).double()
        eps = torch.randn(xt.shape, generator=g).double()
        z = torch.randn(xt.shape, generator=g).double()
        got = as_tensor(call(fn, name, s, eps.clone(), xt.clone(), t, tp, eta, z.clone()), name, xt.shape)
        want, _ = ddim.ddim_step(s, eps, xt, t, tp, eta, z, clip_denoised=False)
        if not close(got, want, atol=1e-4, rtol=1e-3):
            if tp == -1:
                hint = "for t_prev = -1 use alphas_cumprod_prev = 1: the result is just x0_hat"
            elif eta == 0:
                hint = ("x_prev = sqrt(abar_prev) * x0_hat + sqrt(1 - abar_prev) * eps, with "
                        "x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)")
            else:
                hint = ("sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev); the eps "
                        "direction becomes sqrt(1 - abar_prev - sigma^2) and sigma * noise is added")
            raise CheckFailed(f"{name}: wrong result for t={t}, t_prev={tp}, eta={eta}. Hint: {hint}.")
    ok(name, f"correct for (t, t_prev, eta) in {cases}")


def check_clipped_eps(fn: Callable) -> None:
    """fn(schedule, xt, t, x0) -> the eps that, with x0, makes x_t: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
    name = "consistent_eps"
    s = schedules.make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(23)
    for t in (999, 600, 200, 5):
        xt = torch.randn(3, 1, 8, 8, generator=g).double() * 1.5
        x0 = (torch.randn(xt.shape, generator=g).double() * 1.5).clamp(-1, 1)  # a clipped x0_hat
        got = as_tensor(call(fn, name, s, xt.clone(), t, x0.clone()), name, xt.shape)
        want = ddpm.predict_eps_from_x0(s, xt, t, x0)
        if not close(got, want, atol=1e-4, rtol=1e-3):
            abar = s.alphas_cumprod[t].double()
            if close(abar.sqrt() * x0 + (1 - abar).sqrt() * got, xt, atol=1e-3, rtol=1e-3):
                hint = "use the schedule's float64 values; the formula is right but the numbers are off"
            elif close(got, (xt - s.alphas[t].double().sqrt() * x0) / (1 - s.alphas[t].double()).sqrt()):
                hint = "use alphas_cumprod (abar_t), not alphas"
            else:
                hint = ("x0 and eps must add up to x_t again: sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps = x_t; "
                        "solve it for eps")
            raise CheckFailed(f"{name}: wrong eps at t={t}. Hint: {hint}.")
    ok(name, "sqrt(abar_t) x0 + sqrt(1 - abar_t) eps gives back x_t at t = 999, 600, 200, 5")


def check_ddim_timesteps(fn: Callable) -> None:
    """fn(T, steps) -> list of `steps` decreasing timesteps [(steps-1)*k, ..., k, 0], k = T // steps."""
    name = "make_timesteps"
    # 1000 / 6 = 166.67 and 100 / 7 = 14.29: a rounding (rather than floor) of the step size shows up
    for T, steps in ((1000, 10), (1000, 50), (1000, 1000), (100, 7), (1000, 6)):
        got = as_int_list(call(fn, name, T, steps), f"{name}(T={T}, steps={steps})")
        want = ddim.ddim_timesteps(T, steps)
        if got != want:
            if sorted(got) == want[::-1] and got != want:
                hint = "sampling goes from noise to data: the list must decrease (reverse it)"
            elif len(got) != steps:
                hint = f"return exactly {steps} timesteps"
            elif got == [i * round(T / steps) for i in range(steps)][::-1] or \
                    got == [round(i * T / steps) for i in range(steps)][::-1]:
                hint = f"the step is T // steps = {T // steps} (floor), not round(T / steps) = {round(T / steps)}"
            else:
                hint = f"use multiples of T // steps = {T // steps}, starting from 0"
            raise CheckFailed(f"{name}(T={T}, steps={steps}) = {got[:6]}..., expected {want[:6]}... Hint: {hint}.")
    ok(name, "correct for T=1000 with 10, 50, 1000 steps and T=100 with 7")


def check_slerp(fn: Callable) -> None:
    """fn(z0, z1, lam) -> spherical interpolation, per sample."""
    name = "my_slerp"
    g = torch.Generator().manual_seed(22)
    z0, z1 = torch.randn(4, 1, 8, 8, generator=g).double(), torch.randn(4, 1, 8, 8, generator=g).double()
    for a in (0.0, 0.3, 0.5, 1.0):
        got = as_tensor(call(fn, name, z0.clone(), z1.clone(), a), name, z0.shape)
        want = ddim.slerp(z0, z1, a)
        if not close(got, want, atol=1e-4, rtol=1e-3):
            if close(got, (1 - a) * z0 + a * z1, atol=1e-4):
                hint = "that is linear interpolation; slerp weights are sin((1-lam) w)/sin(w) and sin(lam w)/sin(w)"
            else:
                hint = ("w = arccos(<z0, z1> / (|z0| |z1|)) computed per sample over all pixels "
                        "(flatten from dim 1), reshaped to (B, 1, 1, 1)")
            raise CheckFailed(f"{name}: wrong at lam={a}. Hint: {hint}.")
    ok(name, "matches spherical interpolation at lam = 0, 0.3, 0.5, 1")


def _reference_inversion(model, s, x0, y, steps, order_down=False, eps_at_target=False):
    ts = ddim.ddim_timesteps(s.T, steps)
    ts = ts if order_down else ts[::-1]
    x, prev = x0, -1
    for t in ts:
        at = t if eps_at_target else max(prev, 0)
        eps = model(x, torch.full((x.shape[0],), at, dtype=torch.long), y=y)
        x0_hat = x if prev < 0 else ddpm.predict_x0_from_eps(s, x, torch.full((x.shape[0],), prev), eps)
        a = s.alphas_cumprod[t].double()
        x = a.sqrt().float() * x0_hat + (1 - a).sqrt().float() * eps
        prev = t
    return x


def check_invert(fn: Callable) -> None:
    """fn(model, schedule, x0, y, steps) -> x_T: DDIM (eta = 0) run backwards over ddim_timesteps(T, steps) taken in
    increasing order, eps evaluated at the current (less noisy) point."""
    name = "invert"
    s = schedules.make_schedule("cosine", 1000)
    model = random_unet(31)
    g = torch.Generator().manual_seed(32)
    x0 = (torch.rand(3, 1, 8, 8, generator=g) * 2 - 1)
    y = torch.tensor([2, 7, 0])
    with torch.no_grad():
        want = ddim.ddim_invert(model, s, x0, steps=10, cond={"y": y}, progress=False)
        got = as_tensor(call(fn, name, model, s, x0.clone(), y.clone(), 10), name, tuple(x0.shape))
        if not close(got, want, atol=1e-4, rtol=1e-4):
            suspects = [
                (_reference_inversion(model, s, x0, y, 10, eps_at_target=True),
                 "evaluate the network at the point you are at (the previous, less noisy timestep; t = 0 on the "
                 "first step), not at the timestep you are going to"),
                (_reference_inversion(model, s, x0, y, 10, order_down=True),
                 "inversion walks the timesteps upwards, from data (t = 0) to noise: reverse ddim_timesteps(T, steps)"),
            ]
            hint = next((h for v, h in suspects if close(got, v, atol=1e-4, rtol=1e-4)), None) or (
                "for increasing t: eps = model(x, t_prev); x0_hat = x on the first step, else predict x0 from (x, "
                "t_prev, eps); x = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps")
            raise CheckFailed(f"{name}: the inverted noise differs from DDIM inversion by up to "
                              f"{float((got - want).abs().max()):.3g}. Hint: {hint}.")
    ok(name, "matches DDIM inversion over 10 steps with a random class-conditional U-Net")
