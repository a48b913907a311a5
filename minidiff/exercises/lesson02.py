"""Checks for lesson 02 (DDPM)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import ddpm, schedules
from ._common import CheckFailed, as_tensor, call, close, ok, random_unet


def _reverse_inputs(seed: int = 11):
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(4, 1, 8, 8, generator=g) * 2 - 1).double()
    eps = torch.randn(x0.shape, generator=g).double()
    t = torch.tensor([1, 30, 400, 999])
    xt = ddpm.q_sample(s, x0, eps, t)
    return s, x0, eps, t, xt


def check_posterior(fn: Callable) -> None:
    """fn(schedule, x0, xt, t) -> (mean, variance) of q(x_{t-1} | x_t, x_0); variance broadcastable to x's shape."""
    name = "posterior_mean_variance"
    s, x0, _, t, xt = _reverse_inputs()
    out = call(fn, name, s, x0.clone(), xt.clone(), t.clone())
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (mean, variance)")
    mean = as_tensor(out[0], name + " mean", xt.shape)
    if not isinstance(out[1], torch.Tensor):
        raise CheckFailed(f"{name} should return the variance as a tensor, got {type(out[1]).__name__}")
    try:
        var = torch.broadcast_to(out[1].detach().double(), xt.shape)
    except RuntimeError:
        raise CheckFailed(f"{name}: the variance has shape {tuple(out[1].shape)}; it must broadcast to "
                          f"{tuple(xt.shape)} (use shape (B, 1, 1, 1))") from None
    want_mean, want_var = ddpm.q_posterior_mean_variance(s, x0, xt, t)
    # tolerances allow for float32 schedule values: 1 - alphas_cumprod[1] keeps only ~4 digits in float32
    if not close(var, want_var.expand_as(xt), atol=1e-7, rtol=1e-3):
        if close(var, torch.broadcast_to(s.betas.double()[t].reshape(-1, 1, 1, 1), xt.shape), atol=1e-7):
            hint = "that is beta_t; the posterior variance is beta_t (1 - abar_{t-1}) / (1 - abar_t)"
        else:
            hint = "variance = beta_t * (1 - alphas_cumprod_prev[t]) / (1 - alphas_cumprod[t])"
        raise CheckFailed(f"{name}: wrong variance for t = {t.tolist()}. Hint: {hint}.")
    _check_posterior_coefficients(fn, name)  # first: it can name the mistake
    if not close(mean, want_mean, atol=2e-3, rtol=1e-3):
        raise CheckFailed(
            f"{name}: wrong mean for t = {t.tolist()}. Hint: mean = sqrt(abar_(t-1)) beta_t / (1 - abar_t) * x0 "
            "+ sqrt(alpha_t) (1 - abar_(t-1)) / (1 - abar_t) * xt, with every coefficient indexed by t and "
            "reshaped to (B, 1, 1, 1)."
        )
    ok(name, f"mean and variance correct for t = {t.tolist()}")


def check_ddpm_loss(fn: Callable) -> None:
    """fn(model, schedule, x0, noise, t) -> L_simple = mean((noise - model(x_t, t))^2) with x_t = q_sample(...)."""
    name = "simple_loss"
    s, x0, eps, t, _ = _reverse_inputs(12)

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # a fixed, simple "network"
        return 0.5 * x + 0.001 * t.reshape(-1, 1, 1, 1).to(x.dtype)

    out = call(fn, name, model, s, x0.clone(), eps.clone(), t.clone())
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise CheckFailed(f"{name} should return a scalar tensor (use .mean()), got "
                          f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    xt = ddpm.q_sample(s, x0, eps, t)
    want = torch.mean((model(xt, t) - eps) ** 2)
    got = out.detach().double().reshape(())
    if not close(got, want, atol=1e-6):
        if close(got, torch.mean((model(xt, t) - x0) ** 2), atol=1e-6):
            hint = "the target is the noise eps, not x0 (we train an eps-predictor)"
        elif close(got, torch.mean((model(x0, t) - eps) ** 2), atol=1e-6):
            hint = "feed the network the noisy x_t = q_sample(schedule, x0, noise, t), not x0"
        else:
            hint = "x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise; loss = mean((model(x_t, t) - noise)^2)"
        raise CheckFailed(f"{name}: got {float(got):.5f}, expected {float(want):.5f}. Hint: {hint}.")
    ok(name, "L_simple correct on a fixed batch")


def check_ancestral_step(fn: Callable) -> None:
    """fn(schedule, eps, xt, t, noise) -> x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t/sqrt(1-abar_t) eps) + sigma_t z."""
    name = "ancestral_step"
    s = schedules.make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(13)
    for t in (999, 700, 5, 0):
        xt = torch.randn(3, 1, 8, 8, generator=g).double()
        eps = torch.randn(xt.shape, generator=g).double()
        z = torch.randn(xt.shape, generator=g).double()
        got = as_tensor(call(fn, name, s, eps.clone(), xt.clone(), t, z.clone()), name, xt.shape)
        want, _ = ddpm.p_sample(s, eps, xt, t, z, clip_denoised=False)
        if not close(got, want, atol=1e-5):
            a, b, ab = float(s.alphas[t]), float(s.betas[t]), float(s.alphas_cumprod[t])
            mu = (xt - b / (1 - ab) ** 0.5 * eps) / a**0.5
            r = (got - mu).flatten()
            along_z = float(r @ z.flatten()) / (float(r.norm() * z.flatten().norm()) + 1e-12) > 0.999
            if t == 0 and along_z:
                hint = "at t = 0 return the mean only: no noise is added on the last step"
            elif t > 0 and close(got, mu + b**0.5 * z, atol=1e-5):
                hint = ("you used sigma_t = sqrt(beta_t); this lesson uses the posterior variance "
                        "sigma_t^2 = posterior_variance[t] = beta_t (1 - abar_(t-1)) / (1 - abar_t)")
            elif t > 0 and close(got, mu, atol=1e-5):
                hint = "add sigma_t * noise for t > 0 (sigma_t = sqrt(posterior_variance[t]))"
            else:
                hint = "mean = (x_t - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t)"
            raise CheckFailed(f"{name}: wrong x_(t-1) at t = {t}. Hint: {hint}.")
    ok(name, "x_(t-1) correct at t = 999, 700, 5 and 0")


def check_predict_x0(fn: Callable) -> None:
    """fn(schedule, xt, t, eps) -> x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), one t per sample."""
    name = "predict_x0"
    s, x0, eps, t, xt = _reverse_inputs(14)
    got = as_tensor(call(fn, name, s, xt.clone(), t.clone(), eps.clone()), name, xt.shape)
    if not close(got, x0, atol=1e-4, rtol=1e-3):
        per = (got - x0).flatten(1).abs().amax(1)
        wrong = [int(t[i]) for i in range(len(t)) if per[i] > 1e-3]
        raise CheckFailed(
            f"{name}: does not recover x0 for t = {wrong}. Hint: solve x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps "
            "for x0, with abar_t = alphas_cumprod[t] reshaped to (B, 1, 1, 1)."
        )
    ok(name, f"recovers x0 exactly for t = {t.tolist()}")


def _check_posterior_coefficients(fn: Callable, name: str) -> None:
    """The two mean coefficients one by one (x0 = 1, x_t = 0 gives coef1; x0 = 0, x_t = 1 gives coef2) at the
    boundary steps t = 0 and T-1 and at 500, 900 of the cosine schedule, to a relative 1e-4: tight enough to tell
    sqrt(abar_t) from sqrt(abar_(t-1)) (they differ by sqrt(alpha_t), 0.16 % at t = 500), loose enough for float32.
    At t = 0 the tolerance is 1e-2: 1 - abar_0 = beta_0 = 4e-5 keeps only ~3 digits in float32, and the bug that
    shows there (alphas_cumprod[t - 1] wrapping around to the last entry) is off by ~100 %."""
    s = schedules.make_schedule("cosine", 1000)
    t = torch.tensor([0, 500, 900, 999])
    shape = (4, 1, 2, 2)
    rtol = torch.tensor([1e-2, 1e-4, 1e-4, 1e-4], dtype=torch.float64).reshape(-1, 1, 1, 1)

    def near(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:  # per timestep
        return ((got - want).abs() <= 1e-9 + rtol * want.abs()).flatten(1).all(1)

    ones, zeros = torch.ones(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    f = {k: getattr(s, k).double()[t].reshape(-1, 1, 1, 1) for k in
         ("alphas_cumprod", "alphas_cumprod_prev", "betas", "alphas", "posterior_mean_coef1", "posterior_mean_coef2")}
    ab, abp, b, a = f["alphas_cumprod"], f["alphas_cumprod_prev"], f["betas"], f["alphas"]
    wrap = s.alphas_cumprod.double()[t - 1].reshape(-1, 1, 1, 1)  # alphas_cumprod[t - 1]: index -1 at t = 0
    for which, x0, xt, want, suspects in (
        ("x0", ones, zeros, f["posterior_mean_coef1"], [
            (ab.sqrt() * b / (1 - ab), "the x0 coefficient is sqrt(abar_(t-1)) beta_t / (1 - abar_t): you used "
                                       "sqrt(abar_t), the neighbouring index"),
            (abp * b / (1 - ab), "take the square root: sqrt(abar_(t-1)), not abar_(t-1)"),
            (wrap.sqrt() * b / (1 - ab), "at t = 0, abar_(t-1) is 1: use alphas_cumprod_prev[t]; alphas_cumprod[t - 1] "
                                         "wraps around to the last entry")]),
        ("x_t", zeros, ones, f["posterior_mean_coef2"], [
            (a * (1 - abp) / (1 - ab), "take the square root: sqrt(alpha_t), not alpha_t"),
            (a.sqrt() * (1 - ab) / (1 - ab), "the x_t coefficient has (1 - abar_(t-1)) on top, not (1 - abar_t)"),
            (a.sqrt() * (1 - wrap) / (1 - ab), "at t = 0, abar_(t-1) is 1: use alphas_cumprod_prev[t]; "
                                               "alphas_cumprod[t - 1] wraps around to the last entry")]),
    ):
        out = call(fn, name, s, x0.clone(), xt.clone(), t.clone())
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise CheckFailed(f"{name} should return a pair (mean, variance)")
        got = as_tensor(out[0], name + " mean", shape)
        ok_t = near(got, want.expand(shape))
        if not bool(ok_t.all()):
            bad = ~ok_t
            hint = next((h for v, h in suspects if bool(near(got, v.expand(shape))[bad].all())), None)
            raise CheckFailed(f"{name}: the {which} coefficient of the mean is wrong at t = {t[bad].tolist()} (cosine "
                              "schedule). Hint: "
                              f"{hint or 'index every coefficient by t; abar_(t-1) = alphas_cumprod_prev[t]'}.")


def _reference_loop(model, s, x_T, y, noises, order=None, noise_at_0=False, labels=True, shift=0, clip=False):
    """The ancestral chain of the build exercise, or a version with one mistake (for the hints and the tests)."""
    x = x_T
    for t in (order if order is not None else range(s.T - 1, -1, -1)):
        eps = model(x, torch.full((x.shape[0],), t, dtype=torch.long), y=y if labels else None)
        x, _ = ddpm.p_sample(s, eps, x, t, noises[max(0, min(s.T - 1, t + shift))], clip_denoised=clip)
        if t == 0 and noise_at_0:
            x = x + s.betas[0].sqrt() * noises[0]
    return x


def check_sample_loop(fn: Callable) -> None:
    """fn(model, schedule, x_T, y, noises) -> x_0: the whole ancestral chain t = T-1, ..., 0, each step
    model(x_t, t, y=y) -> eps -> x_(t-1) with noises[t] (none at t = 0), without clipping."""
    name = "sample_loop"
    s = schedules.make_schedule("linear", 20)
    model = random_unet()
    g = torch.Generator().manual_seed(18)
    x_T = torch.randn(4, 1, 8, 8, generator=g)
    y = torch.tensor([3, 1, 4, 1])
    noises = torch.randn(s.T, *x_T.shape, generator=g)
    with torch.no_grad():
        want = _reference_loop(model, s, x_T, y, noises)
        got = as_tensor(call(fn, name, model, s, x_T.clone(), y.clone(), noises.clone()), name, tuple(x_T.shape))
    if not close(got, want, atol=1e-4, rtol=1e-4):
        with torch.no_grad():
            suspects = [
                (_reference_loop(model, s, x_T, y, noises, order=range(s.T)),
                 "the chain runs from t = T-1 (noise) down to t = 0, not upwards"),
                (_reference_loop(model, s, x_T, y, noises, noise_at_0=True),
                 "add no noise on the last step (t = 0): it returns the mean"),
                (_reference_loop(model, s, x_T, y, noises, labels=False),
                 "pass the labels to the network: model(x_t, t, y=y)"),
                (_reference_loop(model, s, x_T, y, noises, shift=-1),
                 "step t uses noises[t], not noises[t - 1]"),
            ]
            hint = next((h for v, h in suspects if close(got, v, atol=1e-4, rtol=1e-4)), None)
        if hint is None:
            hint = ("for t = T-1 down to 0: eps = model(x, t as a (B,) long tensor, y=y), then one ancestral step "
                    "(your ancestral_step, or minidiff.ddpm.p_sample(..., clip_denoised=False)) with noises[t]")
        raise CheckFailed(f"{name}: the final x_0 differs from the ancestral chain by up to "
                          f"{float((got - want).abs().max()):.3g}. Hint: {hint}.")
    ok(name, f"the whole {s.T}-step chain matches, with a random class-conditional U-Net and fixed noises")
