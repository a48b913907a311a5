r"""Editing with a trained flow model: SDEdit and inpainting (lesson 09).

SDEdit (Meng et al., "SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations", ICLR 2022):
noise the image part of the way, x_s = (1 - s) x + s eps with s = `strength`, then integrate the model's ODE from
s back to 0. strength 0 returns the image; strength 1 forgets it (a fresh sample); in between the coarse layout of x
survives and the details are redrawn — the trade-off between faithfulness and following a new condition.

Inpainting by replacement (the simplest form of RePaint, Lugmayr et al., CVPR 2022): at every grid point t the known
region of x_t is replaced by the known image on its own path to the same t, (1 - t) x_known + t eps, so the model
fills only the unknown region, consistent with what is kept; at t = 0 the known pixels are the image's exactly.

Inversion (DDIM inversion, Song et al. 2021 and Mokady et al. 2023, written for a flow): run the ODE the other way,
x_{t_next} = x_t + (t_next - t) v(x_t, t) on the increasing grid 0 -> 1, to find the noise from which the sampler
would return x. Sampling that noise with a changed condition edits x: what the condition does not name (place,
motion, style) is carried by the noise and kept.
"""

from __future__ import annotations

import torch

from .checks import check_float_tensor, check_mask, check_number
from .flow import euler_timesteps, integrate
from .sampling import Cond, Model, model_device


@torch.no_grad()
def sdedit(model: Model, x: torch.Tensor, strength: float, *, steps: int = 20, cond: Cond | None = None,
           generator: torch.Generator | None = None, shift: float = 1.0) -> torch.Tensor:
    """x edited by the model: noised to t = `strength` on the shifted Euler grid of `steps` steps, then integrated
    back to t = 0 over the grid points at or below it (strength 1: the whole grid, a new sample from x's noise; a
    strength below the grid's last step above 0 edits nothing)."""
    check_float_tensor("x", x, finite=True)
    strength = check_number("strength", strength, 0.0, 1.0)
    grid = euler_timesteps(steps, shift)
    start = int((grid > strength + 1e-12).sum())  # the first grid point at or below `strength`
    if strength == 0 or start >= len(grid) - 1:
        return x.clone()
    ts = grid[start:]
    t0 = float(ts[0])
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return integrate(model, tuple(x.shape), cond=cond, noise=(1 - t0) * x + t0 * eps, timesteps=ts, progress=False)


@torch.no_grad()
def invert(model: Model, x: torch.Tensor, *, steps: int = 20, cond: Cond | None = None, shift: float = 1.0
           ) -> torch.Tensor:
    """The noise x_1 that Euler sampling with these steps, shift and cond maps (approximately) back to x: Euler steps
    on the reversed grid, t = 0 -> 1. Exact in the limit of many steps; inversion reads each interval's slope at its low
    end, the sampler at its high end, so a few steps leave a gap (measured in lesson 09)."""
    check_float_tensor("x", x, finite=True)
    grid = euler_timesteps(steps, shift).flip(0)
    return integrate(model, tuple(x.shape), noise=x, timesteps=grid, cond=cond, progress=False, invert=True)


@torch.no_grad()
def inpaint(model: Model, known: torch.Tensor, mask: torch.Tensor, *, steps: int = 20, cond: Cond | None = None,
            generator: torch.Generator | None = None, shift: float = 1.0) -> torch.Tensor:
    """Fill the region where `mask` is 0 and keep `known` where it is 1 (mask: known's shape, or broadcastable to it,
    values 0 or 1). Euler steps from t = 1 to 0; before each step and at the end the known region is put back on its
    own path x_t = (1 - t) known + t eps (one eps for the whole path)."""
    mask = check_mask(mask, check_float_tensor("known", known, finite=True))
    device = model_device(model)
    known, mask = known.to(device), mask.to(device)
    eps = torch.randn(known.shape, generator=generator).to(device, known.dtype)

    def put_back(x: torch.Tensor, t: float) -> torch.Tensor:
        return mask * ((1 - t) * known + t * eps) + (1 - mask) * x

    x = integrate(model, tuple(known.shape), steps=steps, shift=shift, cond=cond, generator=generator, device=device,
                  before_step=put_back, progress=False)
    return put_back(x, 0.0)
