"""A small MLP velocity field v_theta(x, t) for 2-D toy data (lesson 04)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import Config
from .layers import timestep_embedding


@dataclass
class VelocityMLPConfig(Config):
    """The 2-D velocity MLP of lesson 04."""

    dim: int = 2  # the data's dimension
    hidden: int = 128
    depth: int = 3  # hidden layers
    t_dim: int = 32  # width of the timestep embedding
    time_factor: float = 1000.0  # t in [0, 1] is embedded as t * 1000 (as the flow U-Net and DiT do)


class VelocityMLP(nn.Module):
    """v = MLP([x, timestep_embedding(t)]) with SiLU activations: model(x, t) with x (B, dim), t (B,) in [0, 1]."""

    def __init__(self, config: VelocityMLPConfig | None = None):
        super().__init__()
        self.config = cfg = config or VelocityMLPConfig()
        layers: list[nn.Module] = [nn.Linear(cfg.dim + cfg.t_dim, cfg.hidden), nn.SiLU()]
        for _ in range(cfg.depth - 1):
            layers += [nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU()]
        layers.append(nn.Linear(cfg.hidden, cfg.dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if x.ndim != 2 or x.shape[1] != cfg.dim:
            raise ValueError(f"VelocityMLP expects points of shape (B, {cfg.dim}), got {tuple(x.shape)}")
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        return self.net(torch.cat([x, timestep_embedding(t, cfg.t_dim, time_factor=cfg.time_factor)], dim=1))
