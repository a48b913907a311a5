r"""The Transformer pieces every denoiser here shares, laid out like Flux's `src/flux/modules/layers.py` and
`src/flux/math.py` (Open-Sora v2 reuses them in `opensora/models/mmdit/layers.py` and `math.py`).

Base layer of the package: imports nothing else from minidiff.

    timestep_embedding   t -> [cos(t f), sin(t f)]                     (DDPM, DiT, Flux)
    MLPEmbedder          Linear -> SiLU -> Linear                       (Flux's time_in / vector_in)
    LabelEmbedder        a table of class vectors + the null label      (DiT; guidance.drop_labels trains it)
    modulate             x (1 + scale) + shift                          (adaLN)
    Modulation           vec -> n triples (shift, scale, gate)          (Flux)
    RMSNorm, QKNorm      normalise queries and keys per head            (Flux, SD3)
    rope, apply_rope     rotary position embedding of q and k           (RoFormer; Flux)
    EmbedND              RoPE over several position axes (frame, row, column)
    attention            softmax(q k^T / sqrt(d)) v with optional RoPE and key mask
    mlp                  Linear -> GELU(tanh) -> Linear                 (DiT, Flux)
    LastLayer            adaLN (shift, scale) -> Linear to patch values  (DiT's FinalLayer = Flux's LastLayer)
    patchify, unpatchify              images (B, C, H, W) <-> tokens, DiT's (p, p, C) feature order
    patchify_video, unpatchify_video  videos (B, C, T, H, W) <-> tokens, Flux/Open-Sora's (C, p, p) order
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_labels

# ------------------------------------------------------------------------------------------------ time and labels


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                       time_factor: float = 1.0) -> torch.Tensor:
    r"""Sinusoidal embedding of (possibly fractional) timesteps, as in Transformers, DDPM, DiT and Flux.

    freqs_i = exp(-ln(max_period) * i / half),  i = 0..half-1,  half = dim // 2
    emb(t)  = [cos(time_factor t freqs), sin(time_factor t freqs)]   (cos first, as in Flux; zero-padded if dim is odd)
    t: (B,) -> (B, dim). DDPM models get integer steps 0..999 (time_factor 1); flow models get t in [0, 1] and
    time_factor 1000 (Flux's default), so both see the same range of angles.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (time_factor * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class MLPEmbedder(nn.Module):
    """Linear(in_dim, hidden) -> SiLU -> Linear(hidden, hidden): Flux's embedder of the timestep sinusoids
    (`time_in`) and of the pooled text vector (`vector_in`)."""

    def __init__(self, in_dim: int, hidden_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(self.silu(self.in_layer(x)))


class LabelEmbedder(nn.Module):
    """A table of num_classes + 1 vectors; the extra row (index num_classes, `null_label`) means "no label" and is
    what classifier-free guidance compares against (training drops labels to it: `guidance.drop_labels`).
    y: (B,) integer labels -> (B, hidden_size). None means the null label for the whole batch."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, y: torch.Tensor | None, batch: int | None = None) -> torch.Tensor:
        if y is None:
            if batch is None:
                raise ValueError("LabelEmbedder needs labels, or the batch size to use the null label")
            y = torch.full((batch,), self.null_label, dtype=torch.long, device=self.embedding_table.weight.device)
        check_labels(y, self.num_classes, batch)
        return self.embedding_table(y.long())


# ------------------------------------------------------------------------------------------------ modulation


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN's affine step: x * (1 + scale) + shift, one (shift, scale) per sample broadcast over the N tokens.

    x: (B, N, D); shift, scale: (B, D) or (B, 1, D). With scale = shift = 0 it returns x unchanged.
    """
    if shift.ndim == 2:
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return x * (1 + scale) + shift


@dataclass
class ModulationOut:
    """One (shift, scale, gate) triple, each (B, 1, D): x + gate * f(modulate(LN(x), shift, scale))."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor


class Modulation(nn.Module):
    """vec (B, D) -> n triples (shift, scale, gate), each (B, 1, D): Linear(SiLU(vec)) cut into 3n chunks, in the
    order shift, scale, gate (Flux's `Modulation`; n = 2 for a double-stream block: attention, then MLP)."""

    def __init__(self, dim: int, n: int = 1):
        super().__init__()
        self.n = n
        self.lin = nn.Linear(dim, 3 * n * dim)

    def forward(self, vec: torch.Tensor) -> tuple[ModulationOut, ...]:
        out = self.lin(F.silu(vec))[:, None, :].chunk(3 * self.n, dim=-1)
        return tuple(ModulationOut(*out[3 * i:3 * i + 3]) for i in range(self.n))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * scale over the last dim, computed in float32 (scale starts at 1)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.scale


class QKNorm(nn.Module):
    """RMSNorm of the queries and of the keys, per head (separate scales), before RoPE: keeps attention logits
    from growing without bound, which makes larger learning rates safe (ViT-22B, SD3, Flux)."""

    def __init__(self, head_dim: int):
        super().__init__()
        self.query_norm, self.key_norm = RMSNorm(head_dim), RMSNorm(head_dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query_norm(q).to(v), self.key_norm(k).to(v)


# ------------------------------------------------------------------------------------------------ positions (RoPE)


def rope(pos: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    r"""Rotation matrices of rotary position embedding for one position axis.

    pos (B, L) -> (B, L, dim/2, 2, 2): for pair j of the head dimensions, the 2x2 rotation by the angle
    pos * omega_j with omega_j = theta^(-2j / dim) (fast-turning pairs first, slow ones last).
    """
    if dim % 2:
        raise ValueError(f"a RoPE axis needs an even number of dimensions, got {dim}")
    omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim)
    angle = pos.double()[..., None] * omega  # (B, L, dim/2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([cos, -sin, sin, cos], dim=-1).reshape(*angle.shape, 2, 2).float()


def apply_rope(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Rotate each pair (x[2j], x[2j+1]) of the head dimensions of q and k by its angle (Flux's interleaved layout).

    xq, xk: (B, H, L, D); freqs_cis: (B, 1, L, D/2, 2, 2) from `EmbedND`. A rotation keeps every vector's norm, and
    q_m . k_n then depends on the positions only through m - n (relative positions).
    """
    def rot(x: torch.Tensor) -> torch.Tensor:
        x_ = x.float().reshape(*x.shape[:-1], -1, 1, 2)  # (..., D/2, 1, 2): the pairs as row vectors
        out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
        return out.reshape(*x.shape).type_as(x)

    return rot(xq), rot(xk)


class EmbedND(nn.Module):
    """RoPE over several axes: ids (B, L, n_axes), e.g. (frame, row, column) -> freqs_cis (B, 1, L, D/2, 2, 2).

    Axis i gets axes_dim[i] of the head's D = sum(axes_dim) dimensions (Flux: [16, 56, 56] of 128). Text tokens have
    ids 0 on every axis, i.e. no rotation at all: attention sees text positions as "everywhere".
    """

    def __init__(self, dim: int, theta: float, axes_dim: list[int] | tuple[int, ...]):
        super().__init__()
        if sum(axes_dim) != dim:
            raise ValueError(f"the RoPE axes dims {list(axes_dim)} must add up to the head dim {dim}")
        self.dim, self.theta, self.axes_dim = dim, theta, list(axes_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 3 or ids.shape[-1] != len(self.axes_dim):
            raise ValueError(f"ids must have shape (B, L, {len(self.axes_dim)}), got {tuple(ids.shape)}")
        emb = torch.cat([rope(ids[..., i], d, self.theta) for i, d in enumerate(self.axes_dim)], dim=-3)
        return emb.unsqueeze(1)


# ------------------------------------------------------------------------------------------------ attention, MLP


def attention_weights(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A = softmax(q k^T / sqrt(d)) over the keys: q, k (B, H, L, d) -> (B, H, L_q, L_k), each row sums to 1.

    Row i says how much query token i takes from every token; `attention` returns A v (fused, without forming A).
    Lesson 05 draws these rows as heat maps."""
    if q.ndim != 4 or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have shape (B, H, L, d) with the same B, H and d, got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pe: torch.Tensor | None = None,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v over heads: q, k, v (B, H, L, d) -> (B, L, H*d).

    pe (from `EmbedND`) rotates q and k first (RoPE); mask (B, L) bool, True = a key that may be attended to (padding
    is False). Uses torch's fused scaled_dot_product_attention.
    """
    if pe is not None:
        q, k = apply_rope(q, k, pe)
    attn_mask = None
    if mask is not None:
        if mask.shape != (q.shape[0], k.shape[2]):
            raise ValueError(f"the attention mask must have shape (B, L) = {(q.shape[0], k.shape[2])}, "
                             f"got {tuple(mask.shape)}")
        attn_mask = mask[:, None, None, :].bool()
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def mlp(hidden_size: int, mlp_ratio: float = 4.0) -> nn.Sequential:
    """The Transformer's position-wise MLP: Linear(D, ratio D) -> GELU (tanh approximation) -> Linear(ratio D, D)."""
    hidden = int(hidden_size * mlp_ratio)
    return nn.Sequential(nn.Linear(hidden_size, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, hidden_size))


class LastLayer(nn.Module):
    """The output layer of DiT (`FinalLayer`) and Flux (`LastLayer`): (shift, scale) = adaLN_modulation(vec);
    modulate(LN(x), shift, scale) -> Linear to patch_size^2 * out_channels values per token."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# ------------------------------------------------------------------------------------------------ patches


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_patch(p: int, h: int, w: int) -> None:
    if isinstance(p, bool) or not isinstance(p, int) or p <= 0:
        raise ValueError(f"patch_size must be a positive integer, got {type(p).__name__} {p!r}")
    if h % p or w % p:
        common = [d for d in _divisors(h) if w % d == 0]
        raise ValueError(f"patch size {p!r} does not divide the size {h}x{w}: choose a patch size that divides both "
                         f"(one of {common})")


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C) with N = (H/p)(W/p), patches in raster order, each flattened as (p, p, C)
    (DiT's order)."""
    if x.ndim != 4:
        raise ValueError(f"patchify expects images (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    p = patch_size
    _check_patch(p, h, w)
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, patch_size: int, height: int, width: int, channels: int) -> torch.Tensor:
    """The exact inverse of `patchify`: (B, N, p*p*C) -> (B, C, H, W)."""
    p = patch_size
    _check_patch(p, height, width)
    gh, gw = height // p, width // p
    if tokens.ndim != 3 or tokens.shape[1] != gh * gw or tokens.shape[2] != p * p * channels:
        raise ValueError(
            f"expected tokens of shape (B, {gh * gw}, {p * p * channels}) for {channels}x{height}x{width} images "
            f"with patch size {p}, got {tuple(tokens.shape)}"
        )
    b = tokens.shape[0]
    x = tokens.reshape(b, gh, gw, p, p, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, height, width)


def patchify_video(x: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    """Spacetime patches as Flux and Open-Sora pack latents: `b c t (h ph) (w pw) -> b (t h w) (c ph pw)`.

    (B, C, T, H, W) -> (B, T*(H/p)*(W/p), C*p*p). Time is not patched; tokens run frame by frame (t slowest, then
    rows, then columns), and token features are ordered channel first: feature index c*p*p + ph*p + pw.
    """
    if x.ndim != 5:
        raise ValueError(f"patchify_video expects videos (B, C, T, H, W), got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    p = patch_size
    _check_patch(p, h, w)
    x = x.reshape(b, c, t, h // p, p, w // p, p)
    return x.permute(0, 2, 3, 5, 1, 4, 6).reshape(b, t * (h // p) * (w // p), c * p * p)


def unpatchify_video(tokens: torch.Tensor, frames: int, height: int, width: int, patch_size: int = 2
                     ) -> torch.Tensor:
    """The exact inverse of `patchify_video`: (B, T*(H/p)*(W/p), C*p*p) -> (B, C, T, H, W)."""
    p = patch_size
    _check_patch(p, height, width)
    gh, gw = height // p, width // p
    if tokens.ndim != 3 or tokens.shape[1] != frames * gh * gw or tokens.shape[2] % (p * p):
        raise ValueError(f"expected tokens (B, {frames * gh * gw}, C*{p * p}) for {frames} frames of "
                         f"{height}x{width} with patch size {p}, got {tuple(tokens.shape)}")
    b, c = tokens.shape[0], tokens.shape[2] // (p * p)
    x = tokens.reshape(b, frames, gh, gw, c, p, p)
    return x.permute(0, 4, 1, 2, 5, 3, 6).reshape(b, c, frames, height, width)
