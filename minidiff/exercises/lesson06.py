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
        hint = "you forgot the noise: z must be random, the mean moved by the standard deviation times the noise"
    else:
        hint = ("z is the mean plus the standard deviation times the noise; the standard deviation comes from "
                "logvar, a log-variance")
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
        hint = "the sign of the logvar term (compare your formula with the closed form in the text)"
    elif close(out, 0.5 * (m.pow(2) + lv - 1 - lv.exp())):
        hint = "logvar and var are swapped: var = exp(logvar)"
    elif out.numel() and not bool((out >= -1e-9).all()):
        hint = "a KL divergence is never negative; some of your values are"
    else:
        hint = ("the closed form of KL(N(mean, var) || N(0, 1)) from the text, one value per element, without "
                "summing")
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
            hint = "zeros would also be causal, but here we repeat frame 0 so that a still video stays still"
        elif pad and close(out, torch.cat([xd[:, :, :pad], xd], 2)):
            hint = "those are frames 0..time_pad-1; repeat frame 0 itself, time_pad times"
        else:
            hint = "copy frame 0 time_pad times and put the copies in front of the video, along the time axis (dim 2)"
        raise CheckFailed(f"{name}: wrong result for x of shape {shape} with time_pad={pad}. Hint: {hint}.")
    ok(name, "frame 0 repeated in front, for 4 video shapes and time_pad = 0, 1, 2")


def _conv3d_variant(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int, int], *,
                    time: str = "first", use_bias: bool = True) -> torch.Tensor:
    """A 3-D convolution with the time padding done another way: the likely mistakes the check names."""
    import torch.nn.functional as F

    kt, kh, kw = weight.shape[2:]
    pad = kt - 1
    if time == "first":
        x = vae.causal_pad(x, pad)
    elif time == "zeros":
        x = torch.cat([torch.zeros_like(x[:, :, :1]).expand(-1, -1, pad, -1, -1), x], 2)
    elif time == "last":
        x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], 2)
    elif time == "both":  # zeros on both sides, what Conv3d(padding=k // 2) does
        x = F.pad(x, (0, 0, 0, 0, kt // 2, kt // 2))
    return F.conv3d(x, weight, bias if use_bias else None, stride=stride, padding=(0, kh // 2, kw // 2))


def check_causal_conv3d(fn: Callable) -> None:
    """fn(x, weight, bias, stride) -> CausalConv3d's output: kt - 1 copies of frame 0 in front, space padded by k // 2
    on both sides, then a Conv3d with that weight, bias and stride."""
    name = "causal_conv3d"
    g = torch.Generator().manual_seed(64)
    cases = [((2, 3, 5, 6, 6), (3, 3, 3), (1, 1, 1)), ((1, 2, 9, 8, 8), (3, 3, 3), (2, 2, 2)),
             ((1, 2, 4, 5, 5), (2, 1, 1), (1, 1, 1)), ((1, 2, 3, 4, 4), (1, 3, 3), (1, 2, 2))]
    for shape, kernel, stride in cases:
        layer = vae.CausalConv3d(shape[1], 4, kernel, stride).double()
        with torch.no_grad():
            layer.conv.weight.copy_(torch.randn(layer.conv.weight.shape, generator=g, dtype=torch.float64) * 0.3)
            layer.conv.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
            x = torch.randn(shape, generator=g, dtype=torch.float64).float()
            w, b = layer.conv.weight.float(), layer.conv.bias.float()
            want = layer(x.double())
            what = f"{name}(x of shape {shape}, weight of kernel {kernel}, bias, stride={stride})"
            out = call(fn, name, x.clone(), w.clone(), b.clone(), stride)
            if isinstance(out, torch.Tensor) and out.ndim == 5 and tuple(out.shape) != tuple(want.shape):
                raise CheckFailed(
                    f"{what} returned shape {tuple(out.shape)}, expected {tuple(want.shape)}. Hint: pad kt - 1 = "
                    f"{kernel[0] - 1} frames in front and kh // 2, kw // 2 on both sides in space, then convolve with "
                    f"the stride: T -> (T - 1) // {stride[0]} + 1, H -> (H - 1) // {stride[1]} + 1.")
            got = as_tensor(out, what, tuple(want.shape))
            if close(got, want, atol=1e-4, rtol=1e-4):
                continue
            xd, wd, bd = x.double(), w.double(), b.double()
            suspects = [
                (dict(time="both"), "you padded time on both sides (Conv3d's padding=1): output frame i then sees "
                                    "frame i + 1, the future. Pad kt - 1 frames in front only, with causal_pad"),
                (dict(time="last"), "the padding goes in front of frame 0 (the past), not after the last frame"),
                (dict(time="zeros"), "zeros in front would also be causal, but CausalConv3d repeats frame 0 "
                                     "(causal_pad) so that a still video stays still"),
                (dict(use_bias=False), "add the bias (pass it to F.conv3d)"),
            ]
            hint = next((h for kw, h in suspects if close(got, _conv3d_variant(xd, wd, bd, stride, **kw), atol=1e-4,
                                                          rtol=1e-4)), None) or (
                "F.conv3d(causal_pad(x, kt - 1), weight, bias, stride=stride, padding=(0, kh // 2, kw // 2))")
            raise CheckFailed(f"{what} differs from CausalConv3d by up to {float((got - want).abs().max()):.3g}. "
                              f"Hint: {hint}.")
    ok(name, "matches CausalConv3d for 4 kernels and strides, strided in time and space too")
