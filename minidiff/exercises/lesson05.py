"""Checks for lesson 05 (DiT)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import guidance
from ..models import layers
from ._common import CheckFailed, as_tensor, call, close, ok


def check_patchify(fn: Callable) -> None:
    """fn(x, p): (B, C, H, W) -> (B, N, p*p*C), patches in raster order, each flattened as (row, column, channel)."""
    name = "patchify"
    g = torch.Generator().manual_seed(51)
    for shape, p in [((2, 1, 16, 16), 2), ((1, 3, 8, 12), 4), ((1, 2, 6, 6), 3), ((1, 1, 4, 4), 1)]:
        x = torch.randn(shape, generator=g)
        want = layers.patchify(x, p)
        out = as_tensor(call(fn, name, x.clone(), p), f"{name}(x of shape {shape}, p={p})", tuple(want.shape))
        if close(out, want, atol=0, rtol=0):
            continue
        same_tokens = close(out.sort(dim=-1).values, want.double().sort(dim=-1).values, atol=0, rtol=0)
        hint = ("each token holds the right pixels but in another order: flatten a patch as (row, column, channel), "
                "i.e. permute to (B, H/p, W/p, p, p, C) before the last reshape" if same_tokens else
                "reshape to (B, C, H/p, p, W/p, p), move the two grid axes to the front, then flatten each patch")
        raise CheckFailed(f"{name}: wrong tokens for x of shape {shape} with p={p}. Hint: {hint}.")
    ok(name, "matches minidiff's patchify for 4 image and patch sizes (C = 1, 2, 3; p = 1 to 4)")


def check_unpatchify(fn: Callable) -> None:
    """fn(tokens, p, h, w, c): the exact inverse of patchify."""
    name = "unpatchify"
    g = torch.Generator().manual_seed(52)
    for shape, p in [((2, 1, 16, 16), 2), ((1, 3, 8, 12), 4), ((1, 2, 6, 6), 3)]:
        x = torch.randn(shape, generator=g)
        tokens = layers.patchify(x, p)
        b, c, h, w = shape
        out = as_tensor(call(fn, name, tokens.clone(), p, h, w, c), f"{name}(p={p}, {h}x{w}, C={c})", shape)
        if not close(out, x, atol=0, rtol=0):
            hint = ("the values are all there but misplaced: reshape to (B, H/p, W/p, p, p, C) and permute to "
                    "(B, C, H/p, p, W/p, p) before the final reshape" if close(out.flatten().sort().values,
                                                                                x.double().flatten().sort().values,
                                                                                atol=0, rtol=0)
                    else "undo patchify's steps in reverse order")
            raise CheckFailed(f"{name}: unpatchify(patchify(x)) != x for x of shape {shape}, p={p}. Hint: {hint}.")
    ok(name, "unpatchify(patchify(x)) == x exactly for 3 image and patch sizes")


def check_modulate(fn: Callable) -> None:
    """fn(x, shift, scale) = x * (1 + scale) + shift, with (B, D) shift/scale broadcast over the N tokens of x."""
    name = "modulate"
    g = torch.Generator().manual_seed(53)
    x, shift, scale = torch.randn(3, 5, 8, generator=g), torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    want = layers.modulate(x, shift, scale)
    out = as_tensor(call(fn, name, x.clone(), shift.clone(), scale.clone()), name, tuple(x.shape))
    if close(out, want):
        zero = as_tensor(call(fn, name, x.clone(), torch.zeros(3, 8), torch.zeros(3, 8)), name, tuple(x.shape))
        if close(zero, x):
            ok(name, "x * (1 + scale) + shift per image, and the identity when shift = scale = 0")
            return
    if close(out, x * scale[:, None] + shift[:, None]):
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
        out = as_tensor(call(fn, name, cond.clone(), uncond.clone(), scale), f"{name}(scale={scale})",
                         tuple(cond.shape))
        if not close(out, want):
            if close(out, cond + scale * (uncond - cond)):
                hint = "cond and uncond are swapped: start from the unconditional prediction"
            elif close(out, scale * cond):
                hint = "scale * cond only stretches the prediction; guidance extrapolates from uncond towards cond"
            else:
                hint = "scale = 1 must give cond and scale = 0 must give uncond"
            raise CheckFailed(f"{name}: wrong result with scale {scale}. Hint: {hint}.")
    ok(name, "uncond + scale * (cond - uncond) for scales 0, 1, 2.5 and 5")
