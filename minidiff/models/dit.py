"""DiT: a Transformer denoiser over image patches (Peebles & Xie, "Scalable Diffusion Models with Transformers").

    x (B, C, H, W) --patchify--> tokens (B, N, p*p*C) --x_embedder--> (B, N, D) + pos_embed
    c = t_embedder(t) + y_embedder(y)                        one conditioning vector per image
    for each DiTBlock:  x = x + gate * Attn(modulate(LN(x), shift, scale))     (shift, scale, gate) from c
                        x = x + gate * MLP(modulate(LN(x), shift, scale))
    final_layer: modulate(LN(x)) -> Linear -> (B, N, p*p*C) --unpatchify--> (B, C, H, W)

adaLN-Zero: every block's modulation Linear starts at zero, so every gate is 0 and each block begins as the
identity; the final layer starts at zero too, so a fresh DiT predicts 0 everywhere. The names follow DiT's
`models.py` (x_embedder, t_embedder, y_embedder, pos_embed, blocks, final_layer, adaLN_modulation), and Flux/Open-Sora
reuse the same ideas (their `Modulation`, `LastLayer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..checks import check_denoiser_input
from ..config import Config
from .layers import LabelEmbedder, LastLayer, attention, mlp, modulate, patchify, timestep_embedding, unpatchify

# ------------------------------------------------------------------------------------------------- positions


def get_2d_sincos_pos_embed(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (N, dim), N = grid_h * grid_w in raster order.

    Half the channels encode the row, half the column, each with the 1-D sinusoids of `timestep_embedding`.
    """
    if dim % 4:
        raise ValueError(f"the position embedding needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    emb_r = timestep_embedding(rows.reshape(-1).float(), dim // 2)
    emb_c = timestep_embedding(cols.reshape(-1).float(), dim // 2)
    return torch.cat([emb_r, emb_c], dim=1)


# ------------------------------------------------------------------------------------------------- conditioning


class TimestepEmbedder(nn.Module):
    """t -> MLP(timestep_embedding(t, freq_dim)): sinusoids, then Linear-SiLU-Linear to the model width."""

    def __init__(self, hidden_size: int, freq_dim: int = 256, time_factor: float = 1.0):
        super().__init__()
        self.freq_dim, self.time_factor = freq_dim, time_factor
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim, time_factor=self.time_factor))


# ------------------------------------------------------------------------------------------------- blocks


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d_head)) V over the N tokens."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(attention(q, k, v))


class CrossAttention(nn.Module):
    """Multi-head cross-attention (PixArt-alpha's `MultiHeadCrossAttention`): the queries come from the image tokens
    x (B, N, D), the keys and values from another sequence, the context c (B, M, D_c) — the text tokens in a
    text-to-image DiT:

        q = split(W_q x),   (k, v) = split(W_kv c),   out = W_o merge(softmax(q k^T / sqrt(d_head)) v)   (B, N, D)

    Every image token reads the context; the context is not changed (lesson 08's joint attention updates both).
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dim, self.context_dim = num_heads, dim, context_dim or dim
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(self.context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, N, {self.dim}) image tokens, got {tuple(x.shape)}")
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[-1] != self.context_dim:
            raise ValueError(f"context must be (B, M, {self.context_dim}) with the same B as x {tuple(x.shape)}, "
                             f"got {tuple(context.shape)}")
        b, n, d = x.shape
        h = self.num_heads
        q = self.q_linear(x).reshape(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv_linear(context).reshape(b, context.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        return self.proj(attention(q, k, v, mask=mask))


class DiTBlock(nn.Module):
    """One Transformer block with adaLN-Zero conditioning.

    (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) = adaLN_modulation(c)   (zero at init)
    x = x + gate_msa * Attn(modulate(LN(x), shift_msa, scale_msa))
    x = x + gate_mlp * MLP(modulate(LN(x), shift_mlp, scale_mlp))
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(hidden_size, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


FinalLayer = LastLayer  # DiT's name for the output layer; Flux calls the same layer LastLayer (models/layers.py)


# ------------------------------------------------------------------------------------------------- the model


@dataclass
class DiTConfig(Config):
    """DiT's sizes (DiT-S/2 has hidden_size 384, depth 12, 6 heads; ours is far smaller)."""

    image_size: int = 16
    in_channels: int = 1
    patch_size: int = 2
    hidden_size: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int | None = 10  # None: unconditional; otherwise label num_classes is the null label
    time_factor: float = 1.0  # t is embedded as t * time_factor: 1 for DDPM's steps 0..999, 1000 for flow's [0, 1]


class DiT(nn.Module):
    """model(x, t, y=None) -> a prediction shaped like x (the velocity for flow matching, eps for DDPM).

    x: (B, in_channels, image_size, image_size); t: (B,) timesteps (scaled by config.time_factor before the
    sinusoids); y: (B,) labels 0..num_classes-1, None for the null label.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        p = cfg.patch_size
        if isinstance(p, bool) or not isinstance(p, int) or p <= 0 or cfg.image_size % p:
            divisors = [d for d in range(1, cfg.image_size + 1) if cfg.image_size % d == 0]
            raise ValueError(f"patch size {p!r} must divide image_size {cfg.image_size}: choose one of {divisors}")
        self.grid = cfg.image_size // p
        self.x_embedder = nn.Linear(p * p * cfg.in_channels, cfg.hidden_size)  # = a p x p conv with stride p
        self.t_embedder = TimestepEmbedder(cfg.hidden_size, time_factor=cfg.time_factor)
        self.y_embedder = LabelEmbedder(cfg.num_classes, cfg.hidden_size) if cfg.num_classes else None
        self.register_buffer("pos_embed", get_2d_sincos_pos_embed(cfg.hidden_size, self.grid, self.grid)[None],
                             persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final_layer = LastLayer(cfg.hidden_size, p, cfg.in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform Linears, N(0, 0.02) for the label and timestep MLP inputs, and adaLN-Zero: all modulation
        Linears and the output Linear start at zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        check_denoiser_input("DiT", x, t, cfg.in_channels, cfg.image_size)
        h = self.x_embedder(patchify(x, cfg.patch_size)) + self.pos_embed
        c = self.t_embedder(t)
        if self.y_embedder is not None:
            c = c + self.y_embedder(y, batch=x.shape[0])  # y None: the null label
        elif y is not None:
            raise ValueError("this DiT is unconditional (num_classes=None) but labels were given")
        for block in self.blocks:
            h = block(h, c)
        out = self.final_layer(h, c)
        return unpatchify(out, cfg.patch_size, cfg.image_size, cfg.image_size, cfg.in_channels)
