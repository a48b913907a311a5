"""Building blocks shared by the networks (base layer: imports nothing else from minidiff)."""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    r"""Sinusoidal embedding of (possibly fractional) timesteps, as in Transformers, DDPM, DiT and Flux.

    freqs_i = exp(-ln(max_period) * i / half),  i = 0..half-1,  half = dim // 2
    emb(t)  = [cos(t * freqs), sin(t * freqs)]   (cos first, as in Flux/Open-Sora; zero-padded if dim is odd)
    t: (B,) -> (B, dim). DDPM passes integer steps 0..999; flow models pass t in [0, 1] times 1000.
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
