"""Checks for lesson 06 (VAE)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import vae
from ._common import CheckFailed, as_tensor, call, close, ok


def check_reparameterize(fn: Callable) -> None:
    """fn(mean, logvar, noise) -> z = mean + exp(logvar / 2) * noise."""
    name = "reparameterize"
    g = torch.Generator().manual_seed(61)
    mean, logvar, noise = (torch.randn(4, 3, 2, 5, 5, generator=g) for _ in range(3))
    out = as_tensor(call(fn, name, mean.clone(), logvar.clone(), noise.clone()), name, tuple(mean.shape))
    if close(out, vae.reparameterize(mean, logvar, noise)):
        ok(name, "z = mean + exp(logvar / 2) * noise, elementwise, for latents of shape (4, 3, 2, 5, 5)")
        return
    m, lv, e = mean.double(), logvar.double(), noise.double()
    if close(out, m + lv.exp() * e):
        hint = "exp(logvar) is the variance; multiply the noise by the standard deviation exp(logvar / 2)"
    elif close(out, m + lv * e) or close(out, m + (0.5 * lv) * e):
        hint = "logvar is a log: the standard deviation is exp(logvar / 2), not logvar itself"
    elif close(out, m + lv.exp().sqrt()):
        hint = "you forgot the noise: z must be random, mean + sigma * noise"
    else:
        hint = "z = mean + sigma * noise with sigma = exp(0.5 * logvar)"
    raise CheckFailed(f"{name}: wrong z. Hint: {hint}.")


def check_kl_divergence(fn: Callable) -> None:
    """fn(mean, logvar) -> KL(N(mean, exp(logvar)) || N(0, 1)) per element, same shape as mean."""
    name = "kl_divergence"
    g = torch.Generator().manual_seed(62)
    mean, logvar = torch.randn(3, 4, 6, generator=g), torch.randn(3, 4, 6, generator=g)
    out = as_tensor(call(fn, name, mean.clone(), logvar.clone()), name, tuple(mean.shape))
    m, lv = mean.double(), logvar.double()
    if close(out, vae.kl_divergence(m, lv)):
        zero = as_tensor(call(fn, name, torch.zeros(2, 3), torch.zeros(2, 3)), name, (2, 3))
        if close(zero, torch.zeros(2, 3)):
            ok(name, "0.5 (mean^2 + exp(logvar) - 1 - logvar) per element; 0 exactly when q = N(0, 1)")
            return
    if close(out, m.pow(2) + lv.exp() - 1 - lv):
        hint = "missing the factor 0.5 in front"
    elif close(out, 0.5 * (m.pow(2) + lv.exp() - 1 + lv)):
        hint = "the sign of the logvar term: KL = 0.5 (mean^2 + var - 1 - log var)"
    elif close(out, 0.5 * (m.pow(2) + lv - 1 - lv.exp())):
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
        out = as_tensor(call(fn, name, x.clone(), pad), f"{name}(x of shape {shape}, time_pad={pad})",
                         tuple(want.shape))
        if close(out, want, atol=0, rtol=0):
            continue
        xd = x.double()
        if pad and close(out, torch.cat([xd, xd[:, :, -1:].expand(-1, -1, pad, -1, -1)], 2)):
            hint = "you padded the future side: the copies go in front (before frame 0), not after the last frame"
        elif pad and close(out, torch.cat([torch.zeros_like(xd[:, :, :pad]), xd], 2)):
            hint = "zeros would also be causal, but here we repeat frame 0 (x[:, :, :1]) so a still video stays still"
        elif pad and close(out, torch.cat([xd[:, :, :pad], xd], 2)):
            hint = "those are frames 0..time_pad-1; repeat frame 0 itself, time_pad times"
        else:
            hint = "torch.cat([x[:, :, :1].expand(-1, -1, time_pad, -1, -1), x], dim=2) (time is dim 2)"
        raise CheckFailed(f"{name}: wrong result for x of shape {shape} with time_pad={pad}. Hint: {hint}.")
    ok(name, "frame 0 repeated in front, for 4 video shapes and time_pad = 0, 1, 2")
