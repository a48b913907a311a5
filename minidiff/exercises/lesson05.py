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
                "the channel varying fastest" if same_tokens else
                "separate each spatial axis into (which patch, where inside it), bring the two 'which patch' axes "
                "to the front (they index the tokens), then flatten the rest of each patch")
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
            hint = ("the values are all there but misplaced: each token is (row, column, channel) inside its "
                    "patch, and the tokens run over the grid in raster order" if close(out.flatten().sort().values,
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
    raise CheckFailed(f"{name}: wrong result for x (3, 5, 8), shift and scale (3, 8). Hint: shift and scale have no "
                      "token axis: give them one (of size 1) so each image's values apply to all of its tokens.")


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


def _dit_block_variant(block, x, c, gates=True, swap=False, parallel=False, norm=True):
    """DiTBlock.forward, or a version with one mistake (for the hints and the tests)."""
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = block.adaLN_modulation(c).chunk(6, dim=1)
    if swap:
        shift_msa, scale_msa, shift_mlp, scale_mlp = scale_msa, shift_msa, scale_mlp, shift_mlp
    n1 = block.norm1 if norm else (lambda v: v)
    n2 = block.norm2 if norm else (lambda v: v)
    g1, g2 = (gate_msa.unsqueeze(1), gate_mlp.unsqueeze(1)) if gates else (1.0, 1.0)
    h = x + g1 * block.attn(layers.modulate(n1(x), shift_msa, scale_msa))
    return h + g2 * block.mlp(layers.modulate(n2(x if parallel else h), shift_mlp, scale_mlp))


def check_dit_block(fn: Callable) -> None:
    """fn(block, x, c) -> the DiT block's output, from its parts: block.adaLN_modulation, norm1, attn, norm2, mlp."""
    from ..models.dit import DiTBlock

    name = "dit_block_forward"
    torch.manual_seed(51)
    block = DiTBlock(hidden_size=32, num_heads=4).eval()
    with torch.no_grad():  # open every gate, shift and scale (adaLN-Zero would start them at 0)
        block.adaLN_modulation[-1].weight.normal_(0, 0.3)
        block.adaLN_modulation[-1].bias.normal_(0, 0.3)
    g = torch.Generator().manual_seed(52)
    x, c = torch.randn(3, 5, 32, generator=g), torch.randn(3, 32, generator=g)
    with torch.no_grad():
        want = block(x, c)
        got = as_tensor(call(fn, name, block, x.clone(), c.clone()), name, tuple(x.shape))
        if not close(got, want, atol=1e-5, rtol=1e-4):
            suspects = [
                (dict(gates=False), "multiply each branch by its gate (gate_msa, gate_mlp, unsqueezed to (B, 1, D)): "
                                    "they are what adaLN-Zero starts at zero"),
                (dict(swap=True), "adaLN_modulation(c).chunk(6, dim=1) gives (shift, scale, gate) for attention, then "
                                  "(shift, scale, gate) for the MLP: shift comes first"),
                (dict(parallel=True), "the blocks are sequential: the MLP branch reads x after the attention residual "
                                      "was added"),
                (dict(norm=False), "normalise before modulating: modulate(block.norm1(x), ...) and "
                                   "modulate(block.norm2(x), ...)"),
            ]
            hint = next((h for kw, h in suspects if close(got, _dit_block_variant(block, x, c, **kw), atol=1e-5,
                                                          rtol=1e-4)), None) or (
                "two residual branches in turn, attention then MLP; each reads its norm's output modulated by its "
                "own shift and scale, and is gated before it is added")
            raise CheckFailed(f"{name}: differs from the DiT block by up to {float((got - want).abs().max()):.3g}. "
                              f"Hint: {hint}.")
    ok(name, "matches DiTBlock.forward with every gate, shift and scale non-zero")


def check_attention(fn: Callable) -> None:
    """fn(q, k, v) = softmax(q k^T / sqrt(d)) v for q, k, v of shape (B, H, L, d), per head."""
    name = "scaled_dot_product"
    g = torch.Generator().manual_seed(55)
    for b, h, n, d in [(2, 3, 5, 4), (1, 2, 7, 16)]:
        q, k, v = (torch.randn(b, h, n, d, generator=g) * 2 for _ in range(3))
        want = layers.attention_weights(q, k) @ v
        out = as_tensor(call(fn, name, q.clone(), k.clone(), v.clone()), f"{name}(q, k, v of shape {(b, h, n, d)})",
                        (b, h, n, d))
        if close(out, want):
            continue
        scores = q @ k.transpose(-2, -1)
        hints = [(torch.softmax(scores, -1) @ v,
                  "divide the scores q k^T by sqrt(d), the head size, before the softmax"),
                 (torch.softmax(scores / d, -1) @ v, "divide by sqrt(d), not by d"),
                 (torch.softmax(scores / d**0.5, -2) @ v, "take the softmax over the keys (the last axis of q k^T): "
                  "each query's weights must sum to 1"),
                 (torch.softmax(k @ q.transpose(-2, -1) / d**0.5, -1) @ v, "the scores are q k^T (queries as rows), "
                  "not k q^T")]
        hint = next((h_ for alt, h_ in hints if close(out, alt)), "the weights compare every query with every key "
                    "(scaled), are normalised over the keys, and average the values")
        raise CheckFailed(f"{name}: wrong output for q, k, v of shape {(b, h, n, d)}. Hint: {hint}.")
    ok(name, "softmax(q k^T / sqrt(d)) v for 2 shapes, 2 and 3 heads")


def _mha_variant(attn, x, proj=True, layout="khd", merge="transpose", scale="head"):
    """Attention.forward (multi-head self-attention) written out, or with one mistake (for the hints and the tests)."""
    b, n, dim = x.shape
    h = attn.num_heads
    qkv = attn.qkv(x)
    if layout == "khd":  # the fused projection's channels are (3, heads, head size)
        q, k, v = qkv.reshape(b, n, 3, h, dim // h).permute(2, 0, 3, 1, 4)
    else:  # (heads, 3, head size): the wrong way to cut it
        q, k, v = qkv.reshape(b, n, h, 3, dim // h).permute(3, 0, 2, 1, 4)
    d = q.shape[-1] if scale == "head" else dim
    out = torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1) @ v  # (B, H, N, d)
    out = out.transpose(1, 2).reshape(b, n, dim) if merge == "transpose" else out.reshape(b, n, dim)
    return attn.proj(out) if proj else out


def check_multi_head_attention(fn: Callable) -> None:
    """fn(attn, x): multi-head self-attention from attn.qkv, attn.proj and attn.num_heads: split the fused
    projection into heads, attend per head, merge the heads, project."""
    from ..models.dit import Attention

    name = "multi_head_attention"
    torch.manual_seed(56)
    for dim, heads, n in [(32, 4, 6), (24, 3, 5)]:
        attn = Attention(dim, num_heads=heads).eval()
        x = torch.randn(2, n, dim, generator=torch.Generator().manual_seed(57))
        with torch.no_grad():
            want = attn(x)
            got = as_tensor(call(fn, name, attn, x.clone()), f"{name}(x of shape {(2, n, dim)})", (2, n, dim))
            if close(got, want):
                continue
            suspects = [
                (dict(proj=False), "the heads' outputs are concatenated and then mixed by one more matrix, "
                                   "the output projection W_O"),
                (dict(layout="hkd"), "the fused projection's D * 3 channels are laid out as (3, heads, head size): "
                                     "the first D channels are all the queries"),
                (dict(merge="reshape"), "merging heads: the per-head outputs are (B, H, N, d); bring the token axis "
                                        "next to the batch before joining the heads' channels"),
                (dict(scale="width"), "scale the scores by the head size d = D / H, not by the width D"),
            ]
            hint = next((h_ for kw, h_ in suspects if close(got, _mha_variant(attn, x, **kw))), None) or (
                "q, k, v from one projection, cut into heads (B, H, N, d); attention per head; heads back side by "
                "side (B, N, D); then the output projection")
            raise CheckFailed(f"{name}: differs from minidiff's Attention (D = {dim}, {heads} heads) by up to "
                              f"{float((got - want).abs().max()):.3g}. Hint: {hint}.")
    ok(name, "matches minidiff.models.dit.Attention for 2 widths and head counts")


def _cross_variant(attn, x, context, keys_from="context", proj=True, kv_order="kv", scale="head"):
    """CrossAttention.forward written out, or with one mistake."""
    b, n, dim = x.shape
    h = attn.num_heads
    src = context if keys_from == "context" else x  # "x": self-attention by mistake (possible when D_c = D)
    q = attn.q_linear(x).reshape(b, n, h, dim // h).transpose(1, 2)
    kv = attn.kv_linear(src).reshape(b, src.shape[1], 2, h, dim // h).permute(2, 0, 3, 1, 4)
    k, v = (kv[0], kv[1]) if kv_order == "kv" else (kv[1], kv[0])
    d = dim // h if scale == "head" else dim
    out = (torch.softmax(q @ k.transpose(-2, -1) / d**0.5, dim=-1) @ v).transpose(1, 2).reshape(b, n, dim)
    return attn.proj(out) if proj else out


def check_cross_attention(fn: Callable) -> None:
    """fn(attn, x, context): queries from x (B, N, D), keys and values from context (B, M, D_c), through
    attn.q_linear, attn.kv_linear (keys first, then values), per head, then attn.proj."""
    from ..models.dit import CrossAttention

    name = "cross_attention"
    torch.manual_seed(58)
    for dim, heads, n, m, dc in [(24, 2, 4, 7, 24), (32, 4, 6, 3, 16)]:
        attn = CrossAttention(dim, heads, context_dim=dc).eval()
        g = torch.Generator().manual_seed(59)
        x, context = torch.randn(2, n, dim, generator=g), torch.randn(2, m, dc, generator=g)
        with torch.no_grad():
            want = attn(x, context)
            got = as_tensor(call(fn, name, attn, x.clone(), context.clone()),
                            f"{name}(x {(2, n, dim)}, context {(2, m, dc)})", (2, n, dim))
            if close(got, want):
                continue
            suspects = [
                (dict(keys_from="x"), "that is self-attention: the keys and values come from the context "
                                      "(attn.kv_linear(context)), only the queries from x"),
                (dict(proj=False), "after merging the heads, apply the output projection attn.proj"),
                (dict(kv_order="vk"), "kv_linear's output holds the keys first, then the values"),
                (dict(scale="width"), "scale the scores by the head size d = D / H, not by the width D"),
            ]
            hint = next((h_ for kw, h_ in suspects if close(got, _cross_variant(attn, x, context, **kw))), None) or (
                "the queries come from x (q_linear), the keys and values from the context (kv_linear); one row of "
                "weights per image token, one column per context token")
            raise CheckFailed(f"{name}: differs from minidiff's CrossAttention (N = {n} image tokens, M = {m} context "
                              f"tokens) by up to {float((got - want).abs().max()):.3g}. Hint: {hint}.")
    ok(name, "matches minidiff.models.dit.CrossAttention for 2 sizes (context longer and shorter than x)")
