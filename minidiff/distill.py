r"""Fewer sampling steps by distillation (lesson 09): progressive distillation (Salimans & Ho, "Progressive
Distillation for Fast Sampling of Diffusion Models", ICLR 2022), written for a flow model.

A student with N Euler steps learns to land, in one step, where its teacher lands in two. On the teacher's grid of
2N steps, t_{2i} > t_{2i+1} > t_{2i+2} (the student's grid is every other point):

    x_mid  = x_t + (t_{2i+1} - t_{2i}) v_teacher(x_t, t_{2i})                 two teacher Euler steps
    x_next = x_mid + (t_{2i+2} - t_{2i+1}) v_teacher(x_mid, t_{2i+1})
    v*     = (x_next - x_t) / (t_{2i+2} - t_{2i})                              the one student step that lands there
    loss   = E || v_student(x_t, t_{2i}) - v* ||^2,   x_t = (1 - t) x_0 + t eps

Halve N again with the student as the next teacher: 20 -> 10 -> 5 -> 2 -> 1 steps.
"""

from __future__ import annotations

import torch

from .checks import check_float_tensor, check_int
from .flow import euler_timesteps, integrate, interpolate
from .sampling import Cond, Model, check_cond, t_batch


@torch.no_grad()
def teacher_two_steps(teacher: Model, x: torch.Tensor, t: float, t_mid: float, t_next: float,
                      cond: Cond | None = None) -> torch.Tensor:
    """x at t_next after two teacher Euler steps, t -> t_mid -> t_next (a decreasing grid in [0, 1])."""
    check_float_tensor("x", x)
    return integrate(teacher, tuple(x.shape), noise=x, timesteps=[t, t_mid, t_next], cond=cond, device=x.device,
                     progress=False)


def progressive_distillation_loss(student: Model, teacher: Model, x0: torch.Tensor, student_steps: int, *,
                                  cond: Cond | None = None, generator: torch.Generator | None = None,
                                  shift: float = 1.0) -> torch.Tensor:
    """The loss above, for one batch: one student grid point per batch (uniform), fresh noise, from `generator`."""
    check_float_tensor("x0", x0)
    n = check_int("student_steps", student_steps, low=1)
    grid = euler_timesteps(2 * n, shift).tolist()  # the teacher's grid; the student's is grid[::2]
    i = 2 * int(torch.randint(0, n, (1,), generator=generator))
    t, t_mid, t_next = grid[i], grid[i + 1], grid[i + 2]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    xt = interpolate(x0, noise, torch.full((x0.shape[0],), t, device=x0.device))
    target = (teacher_two_steps(teacher, xt, t, t_mid, t_next, cond) - xt) / (t_next - t)
    pred = student(xt, t_batch(xt, t), **check_cond(cond, x0.shape[0], x0.device))
    return torch.mean((pred.float() - target) ** 2)
