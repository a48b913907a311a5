"""Classifier-free guidance (Ho & Salimans): push a conditional prediction away from the unconditional one.

    pred = uncond + scale * (cond - uncond)

scale = 1 is the plain conditional model, scale = 0 the unconditional one, scale > 1 trades diversity for
adherence to the condition. It works for any prediction that is linear in the score: eps (DDPM, DDIM) and the
velocity of flow matching alike, so one wrapper serves every sampler in the package.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


class ClassifierFreeGuidance(nn.Module):
    """Wrap `model(x, t, y)` so that calling it returns the guided prediction.

    One batched forward pass: [x, x] with conditions [y, null], then split and combine. `null` is the condition
    that means "nothing": the null label (an int) for class-conditional models, or a tensor (e.g. the empty
    caption's embedding) that is repeated over the batch. Pass the wrapper to `ddpm.p_sample_loop`,
    `ddim.ddim_sample` or `flow.euler_sample` in place of the model, with `labels=y`.
    """

    def __init__(self, model: nn.Module, scale: float, null: int | torch.Tensor):
        super().__init__()
        if not isinstance(scale, (int, float)) or scale < 0:
            raise ValueError(f"guidance scale must be a number >= 0 (1 = no guidance), got {scale!r}")
        self.model, self.scale, self.null = model, float(scale), null

    def _null_like(self, y: torch.Tensor) -> torch.Tensor:
        if isinstance(self.null, torch.Tensor):
            return self.null.to(y.device, y.dtype).expand_as(y)
        return torch.full_like(y, self.null)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier-free guidance needs a condition: pass labels (or text) to the sampler")
        if self.scale == 1.0:  # nothing to guide: save the unconditional pass
            return self.model(x, t, y)
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, self._null_like(y)]))
        cond, uncond = out.chunk(2)
        return cfg_combine(cond, uncond, self.scale)
