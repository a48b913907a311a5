r"""A small U-Net that predicts eps_theta(x_t, t, y) for DDPM (Ho et al. 2020, trimmed down), or the velocity for
flow matching (lesson 04).

Encoder: conv_in -> [ResBlock -> Downsample] per level;  middle: ResBlock, SelfAttention, ResBlock at the lowest
resolution;  decoder: [concat skip -> ResBlock -> Upsample] per level;  out: GroupNorm, SiLU, conv (zero-initialised).
Every ResBlock adds the conditioning vector  c = MLP(timestep_embedding(t)) + class_emb(y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_denoiser_input
from ..config import Config
from .layers import LabelEmbedder, attention, timestep_embedding


@dataclass
class UNetConfig(Config):
    """The U-Net of lessons 02-04: image size, widths per level, classes, time scale."""

    image_size: int = 16
    in_channels: int = 1
    channels: tuple[int, ...] = (48, 96, 96)  # width per resolution level; one 2x downsampling between levels
    num_classes: int | None = 10  # None: unconditional. Label `num_classes` is the "null" class (for CFG)
    groups: int = 8
    dropout: float = 0.0
    time_factor: float = 1.0  # t is embedded as t * time_factor: 1 for DDPM's steps 0..999, 1000 for flow's [0, 1]


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))) + Linear(c);  out = skip(x) + conv(dropout(SiLU(GN(h))))."""

    def __init__(self, cin: int, cout: int, cdim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.cond = nn.Linear(cdim, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.cond(c)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, with a residual connection."""

    def __init__(self, ch: int, groups: int, heads: int = 4):
        super().__init__()
        self.norm, self.heads = nn.GroupNorm(groups, ch), heads
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = attention(q, k, v)  # (B, H*W, C)
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """model(x, t, y=None) -> a prediction shaped like x (eps for DDPM, the velocity for flow matching).

    x: (B, in_channels, image_size, image_size); t: (B,) timesteps (integers 0..T-1 for DDPM, t in [0, 1] for flow
    matching, scaled by config.time_factor); y: (B,) labels 0..num_classes-1, or num_classes (= None) for "no label".
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        n = len(cfg.channels)
        if cfg.image_size % 2 ** (n - 1):
            raise ValueError(f"image_size {cfg.image_size} must be divisible by 2^{n - 1} for {n} levels")
        self.cdim = cdim = 4 * cfg.channels[0]
        self.time_mlp = nn.Sequential(nn.Linear(cfg.channels[0], cdim), nn.SiLU(), nn.Linear(cdim, cdim))
        self.class_emb = LabelEmbedder(cfg.num_classes, cdim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.channels[0], 3, padding=1)
        g, p = cfg.groups, cfg.dropout
        self.down = nn.ModuleList()
        chs, prev = [], cfg.channels[0]
        for ch in cfg.channels:
            self.down.append(ResBlock(prev, ch, cdim, g, p))
            chs.append(ch)
            prev = ch
        self.mid1, self.mid_attn, self.mid2 = ResBlock(prev, prev, cdim, g, p), SelfAttention(prev, g), \
            ResBlock(prev, prev, cdim, g, p)
        self.up = nn.ModuleList()
        for ch in reversed(cfg.channels):
            self.up.append(ResBlock(prev + chs.pop(), ch, cdim, g, p))
            prev = ch
        self.norm_out, self.conv_out = nn.GroupNorm(g, prev), nn.Conv2d(prev, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        check_denoiser_input("UNet", x, t, cfg.in_channels, cfg.image_size)
        c = self.time_mlp(timestep_embedding(t, cfg.channels[0], time_factor=cfg.time_factor))
        if self.class_emb is not None:
            c = c + self.class_emb(y, batch=x.shape[0])  # y None: the null label
        elif y is not None:
            raise ValueError("this UNet is unconditional (num_classes=None) but labels were given")
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, c)
            skips.append(h)
            if i < len(self.down) - 1:
                h = F.avg_pool2d(h, 2)
        h = self.mid2(self.mid_attn(self.mid1(h, c)), c)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), c)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
        return self.conv_out(F.silu(self.norm_out(h)))
