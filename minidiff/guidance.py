"""Classifier-free guidance (Ho & Salimans, 2022): push a conditional prediction away from the unconditional one.

    pred = uncond + scale * (cond - uncond)

scale = 1 is the plain conditional model, scale = 0 the unconditional one, scale > 1 trades diversity for
adherence to the condition. It works for any prediction that is linear in the score: eps (DDPM, DDIM) and the
velocity of flow matching alike, so one wrapper serves every sampler in the package. The same network learns both
predictions because training replaces the condition by a null one now and then (`drop_labels`, `label_cond`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

from .checks import check_number

# ---------------------------------------------------------------------------------- training: drop the condition


def drop_labels(y: torch.Tensor | None, null: int | torch.Tensor, p: float,
                generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Replace each entry of a condition (B, ...) by its null value with probability p, independently per sample.

    Classifier-free guidance needs one network that knows both p(x | y) and p(x): training with p ~ 0.1 of the
    conditions dropped teaches the second. `null` is the null label (an int, for class labels) or a tensor that
    broadcasts to one sample's condition (e.g. the empty caption's embedding). Random numbers come from `generator`
    on the CPU, so a seeded run drops the same samples on every device.
    """
    if y is None or p <= 0:
        return y
    if not 0 <= p <= 1:
        raise ValueError(f"the drop probability must lie in [0, 1], got {p}")
    drop = (torch.rand(y.shape[0], generator=generator) < p).to(y.device)
    drop = drop.reshape(-1, *([1] * (y.ndim - 1)))
    null_t = torch.as_tensor(null, dtype=y.dtype, device=y.device)
    return torch.where(drop, null_t, y)


def label_cond(y: torch.Tensor | None, num_classes: int, p: float, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor] | None:
    """cond = {"y": labels} for model(x, t, **cond), each label replaced by the null label (= num_classes) with
    probability p; None (unconditional) without labels."""
    return None if y is None else {"y": drop_labels(y, num_classes, p, generator)}


# ------------------------------------------------------------------------------------------- sampling: guide


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + scale * (cond - uncond)."""
    if not isinstance(scale, torch.Tensor):
        scale = check_number("the guidance scale", scale)
    if cond.shape != uncond.shape:
        raise ValueError(f"cond and uncond predictions must have the same shape, got {tuple(cond.shape)} and "
                         f"{tuple(uncond.shape)}")
    return uncond + scale * (cond - uncond)


def null_like(value: torch.Tensor, null: int | float | torch.Tensor) -> torch.Tensor:
    """The null condition for a batch shaped like `value` (B, ...): a number repeated (the null label), or a tensor
    for one sample ((...) or (1, ...), e.g. the empty caption's embedding) repeated over the batch."""
    if isinstance(null, torch.Tensor):
        null = null.to(value.device, value.dtype)
        if null.shape == value.shape[1:]:
            null = null[None]
        if null.ndim != value.ndim or null.shape[0] != 1 or null.shape[1:] != value.shape[1:]:
            raise ValueError(f"a null condition for a batch of shape {tuple(value.shape)} must have shape "
                             f"{tuple(value.shape[1:])} or (1, {', '.join(map(str, value.shape[1:]))}), got "
                             f"{tuple(null.shape)}")
        return null.expand_as(value)
    return torch.full_like(value, null)


class ClassifierFreeGuidance(nn.Module):
    """Wrap a denoiser `model(x, t, **cond)` so that calling the wrapper the same way returns the guided prediction.

    `null` pairs every conditioning keyword with its value for "no condition": {"y": 10} (the null label) for a
    class-conditional model, {"txt": txt(""), "y_vec": y_vec("")} (the empty caption) for a text-conditional one.
    One batched forward pass: [x, x] with conditions [cond, null], then split and combine. Pass the wrapper to any
    sampler (`ddpm.p_sample_loop`, `ddim.ddim_sample`, `flow.euler_sample`) in place of the model, with the same cond.
    Keywords named in `keep` go to both passes unchanged: guidance on the text alone, the given first frame of
    image-to-video in both (Open-Sora v2 adds a second, image guidance term with a third pass; minidiff does not).
    """

    def __init__(self, model: nn.Module, scale: float, null: Mapping[str, int | float | torch.Tensor],
                 keep: tuple[str, ...] = ()):
        super().__init__()
        scale = check_number("the guidance scale (1 = no guidance)", scale, low=0.0)
        if not isinstance(null, Mapping) or not null:
            raise ValueError(f"null must map each conditioning keyword to its null value, e.g. {{'y': 10}} for the "
                             f"null label; got {null!r}")
        self.model, self.scale, self.null, self.keep = model, float(scale), dict(null), tuple(keep)

    def forward(self, x: torch.Tensor, t: torch.Tensor, **cond: torch.Tensor) -> torch.Tensor:
        if not cond:
            raise ValueError("classifier-free guidance needs a condition: pass cond={...} to the sampler")
        missing = sorted(set(cond) - set(self.null) - set(self.keep))
        if missing:
            raise ValueError(f"no null value for {missing}: give ClassifierFreeGuidance(..., null={{...}}) an entry "
                             f"for every conditioning keyword (it has {sorted(self.null)})")
        if self.scale == 1.0:  # nothing to guide: save the unconditional pass
            return self.model(x, t, **cond)
        both = {k: torch.cat([v, v if k in self.keep else null_like(v, self.null[k])]) for k, v in cond.items()}
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), **both)
        c, u = out.chunk(2)
        return cfg_combine(c, u, self.scale)
