"""A small MLP velocity field v_theta(x, t) for 2-D toy data (lesson 04)."""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import timestep_embedding


class VelocityMLP(nn.Module):
    """v = MLP([x, timestep_embedding(t)]), SiLU activations. t is given as in the flow code: t * 1000."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, t_dim: int = 32):
        super().__init__()
        self.dim, self.t_dim = dim, t_dim
        layers: list[nn.Module] = [nn.Linear(dim + t_dim, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"VelocityMLP expects points of shape (B, {self.dim}), got {tuple(x.shape)}")
        return self.net(torch.cat([x, timestep_embedding(t, self.t_dim)], dim=1))
