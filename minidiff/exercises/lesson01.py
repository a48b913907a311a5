"""Checks for lesson 01 (forward noising)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import ddpm, schedules
from ._common import CheckFailed, as_tensor, call, close, ok


def check_forward_step(fn: Callable) -> None:
    """fn(x_prev, beta_t, noise) -> x_t = sqrt(1 - beta_t) x_prev + sqrt(beta_t) noise."""
    name = "forward_step"
    g = torch.Generator().manual_seed(101)
    cases = 0
    for beta in (0.02, 0.3, 0.9):
        x = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
        eps = torch.randn(x.shape, generator=g)
        got = as_tensor(call(fn, name, x.clone(), beta, eps.clone()), name, x.shape)
        want = ddpm.forward_step(x.double(), beta, eps.double())
        if not close(got, want):
            a, b = (1 - beta) ** 0.5, beta**0.5
            if close(got, a * x.double() + beta * eps.double()):
                hint = "the noise is scaled by sqrt(beta_t), not beta_t (variances add, standard deviations don't)"
            elif close(got, (1 - beta) * x.double() + b * eps.double()):
                hint = "the signal is scaled by sqrt(1 - beta_t) = sqrt(alpha_t), not (1 - beta_t)"
            elif close(got, a * x.double() + (1 - beta) ** 0.5 * eps.double()):
                hint = "the noise coefficient is sqrt(beta_t); you used sqrt(1 - beta_t)"
            else:
                hint = "x_t = sqrt(1 - beta_t) * x_prev + sqrt(beta_t) * noise"
            raise CheckFailed(
                f"{name}(x_prev, beta_t={beta}, noise) is wrong: max error {float((got - want).abs().max()):.3g}. "
                f"Hint: {hint}."
            )
        cases += 1
    ok(name, f"matches x_t = sqrt(1-beta_t) x_(t-1) + sqrt(beta_t) eps for {cases} values of beta_t")


def check_linear_schedule(fn: Callable) -> None:
    """fn(T, beta_start, beta_end) -> betas, a 1-D tensor of length T from beta_start to beta_end, evenly spaced."""
    name = "linear_beta_schedule"
    cases = [(1000, 1e-4, 0.02), (10, 0.001, 0.1), (2, 0.01, 0.5)]
    for T, b0, b1 in cases:
        got = as_tensor(call(fn, name, T, b0, b1), name, (T,))
        want = schedules.linear_beta_schedule(T, b0, b1).double()
        if not close(got, want, atol=1e-7, rtol=1e-5):
            if abs(float(got[0]) - b0) > 1e-7 or abs(float(got[-1]) - b1) > 1e-7:
                hint = (f"the first beta must be beta_start={b0} and the last beta_end={b1} "
                        f"(got {float(got[0]):.3g} .. {float(got[-1]):.3g})")
            else:
                hint = "the betas must be evenly spaced (torch.linspace)"
            raise CheckFailed(f"{name}(T={T}, beta_start={b0}, beta_end={b1}) is wrong. Hint: {hint}.")
    ok(name, f"correct for T in {[c[0] for c in cases]}")


def check_closed_form_coefficients(fn: Callable) -> None:
    """fn(betas) -> (sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod)."""
    name = "closed_form_coefficients"
    for sched in ("linear", "cosine"):
        s = schedules.make_schedule(sched, 1000)
        out = call(fn, name, s.betas.clone())
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise CheckFailed(f"{name} should return a pair (sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod)")
        a = as_tensor(out[0], name + "[0]", (s.T,))
        b = as_tensor(out[1], name + "[1]", (s.T,))
        if not close(a, s.sqrt_alphas_cumprod, atol=1e-5):
            if close(a, s.alphas.double().sqrt(), atol=1e-5):
                hint = "use the cumulative product of the alphas (torch.cumprod), not alpha_t itself"
            elif close(a, s.alphas_cumprod, atol=1e-5):
                hint = "take the square root of alphas_cumprod"
            else:
                hint = "sqrt_alphas_cumprod_t = sqrt(prod_{s<=t} (1 - beta_s))"
            raise CheckFailed(f"{name}: the signal coefficient is wrong for the {sched} schedule. Hint: {hint}.")
        if not close(b, s.sqrt_one_minus_alphas_cumprod, atol=1e-5):
            hint = "the noise coefficient is sqrt(1 - alphas_cumprod_t), so that signal^2 + noise^2 = 1"
            raise CheckFailed(f"{name}: the noise coefficient is wrong for the {sched} schedule. Hint: {hint}.")
    ok(name, "both coefficients correct for the linear and cosine schedules")


def check_q_sample(fn: Callable) -> None:
    """fn(x0, noise, t, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod) -> x_t for a batch of different t
    (the argument order of minidiff.ddpm.q_sample and diffusers' add_noise: data, noise, timesteps)."""
    name = "my_q_sample"
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(5, 1, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 10, 250, 600, 999])
    got = as_tensor(
        call(fn, name, x0.clone(), noise.clone(), t.clone(), s.sqrt_alphas_cumprod.clone(),
             s.sqrt_one_minus_alphas_cumprod.clone()),
        name, x0.shape,
    )
    want = ddpm.q_sample(s, x0.double(), noise.double(), t)
    if not close(got, want):
        per = (got - want).flatten(1).abs().amax(1)
        wrong = [int(t[i]) for i in range(len(t)) if per[i] > 1e-4]
        raise CheckFailed(
            f"{name}: wrong x_t for t = {wrong} (batch t = {t.tolist()}). Hint: each sample uses its own t: "
            "index the coefficients with t, reshape them to (B, 1, 1, 1) and compute a * x0 + b * noise."
        )
    ok(name, f"correct for a batch with t = {t.tolist()}")


def _cosine_variant(T: int, s: float, max_beta: float, *, squared: bool = True, points: int | None = None,
                    offset: bool = True, clip: bool = True, ratio: bool = True) -> torch.Tensor:
    """The cosine schedule with one thing changed: the likely mistakes the check names."""
    import math

    n = T + 1 if points is None else points
    u = torch.linspace(0, 1, n, dtype=torch.float64)
    ss = s if offset else 0.0
    f = torch.cos((u + ss) / (1 + ss) * math.pi / 2) ** (2 if squared else 1)
    abar = f / f[0]
    betas = 1 - abar[1:] / abar[:-1] if ratio else 1 - abar[1:]
    return betas.clamp(max=max_beta) if clip else betas


def check_cosine_schedule(fn: Callable) -> None:
    """fn(T, s, max_beta) -> the T betas of the cosine schedule (Nichol & Dhariwal 2021), clipped at max_beta."""
    name = "cosine_beta_schedule"
    for T, s, max_beta in [(1000, 0.008, 0.999), (10, 0.008, 0.999), (7, 0.1, 0.5)]:
        out = call(fn, name, T, s, max_beta)
        if isinstance(out, torch.Tensor) and out.ndim == 1 and len(out) in (T - 1, T + 1):
            raise CheckFailed(f"{name}(T={T}, ...) returned {len(out)} betas, expected T = {T}. Hint: T + 1 values of "
                              "alphas_cumprod, at u = 0, 1/T, ..., 1 (torch.arange(T + 1) / T), give T ratios.")
        got = as_tensor(out, f"{name}(T={T}, s={s}, max_beta={max_beta})", (T,))
        want = schedules.cosine_beta_schedule(T, s, max_beta).double()
        if close(got, want, atol=1e-6, rtol=1e-4):
            continue
        if not bool(torch.isfinite(got).all()):
            hint = "some betas are NaN or infinite: divide alphas_cumprod(t/T) by alphas_cumprod((t-1)/T), which " \
                   "is never 0 for t <= T, and clip the result"
        else:
            suspects = [
                (dict(clip=False), f"clip the betas at max_beta = {max_beta} (the last one would be 1: "
                                   "alphas_cumprod(1) = 0, a step that destroys everything)"),
                (dict(squared=False), "f(u) is the squared cosine, cos(...) ** 2"),
                (dict(offset=False), "the offset s goes inside the cosine: (u + s) / (1 + s) * pi / 2"),
                (dict(ratio=False), "beta_t is 1 - alphas_cumprod(t/T) / alphas_cumprod((t-1)/T), one minus the "
                                    "ratio of neighbours, not 1 - alphas_cumprod(t/T)"),
                (dict(ratio=False, clip=False), "beta_t is 1 - alphas_cumprod(t/T) / alphas_cumprod((t-1)/T), one "
                                                "minus the ratio of neighbours, not 1 - alphas_cumprod(t/T)"),
            ]
            hint = next((h for kw, h in suspects if close(got, _cosine_variant(T, s, max_beta, **kw), atol=1e-6,
                                                          rtol=1e-4)), None)
            if hint is None and close(got.flip(0), want, atol=1e-6, rtol=1e-4):
                hint = "the betas must grow with t: beta_1 is the smallest, beta_T the largest"
            hint = hint or ("u = arange(T + 1) / T; f = cos((u + s) / (1 + s) * pi / 2) ** 2; "
                            "betas = 1 - f[1:] / f[:-1], clipped at max_beta")
        i = int((got - want).abs().argmax())
        raise CheckFailed(f"{name}(T={T}, s={s}, max_beta={max_beta}): beta[{i}] is {float(got[i]):.6g}, expected "
                          f"{float(want[i]):.6g}. Hint: {hint}.")
    ok(name, "matches the cosine schedule for T = 1000, 10, 7, two offsets s and two clips")
