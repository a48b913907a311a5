"""Checks for lesson 09 (after training: fewer steps, editing, a new concept)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import flow
from ._common import CheckFailed, as_tensor, call, close, ok, random_unet


def _ref_sdedit(model, x, eps, strength, steps, y):
    xs = (1 - strength) * x + strength * eps
    grid = torch.linspace(strength, 0, steps + 1)
    return flow.integrate(model, tuple(x.shape), noise=xs, timesteps=grid, cond={"y": y}, progress=False)


def check_sdedit(fn: Callable) -> None:
    """fn(model, x, eps, strength, steps, y) -> x noised to t = strength with eps, then `steps` uniform Euler steps of
    model(x, t, y=y) from t = strength to 0."""
    name = "sdedit"
    model = random_unet(91)
    g = torch.Generator().manual_seed(92)
    x, eps = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.randn(3, 1, 8, 8, generator=g)
    y = torch.tensor([1, 4, 9])
    with torch.no_grad():
        for strength, steps in ((0.6, 6), (1.0, 3), (0.25, 2)):
            got = as_tensor(call(fn, name, model, x.clone(), eps.clone(), strength, steps, y.clone()),
                            f"{name}(strength={strength}, steps={steps})", tuple(x.shape))
            want = _ref_sdedit(model, x, eps, strength, steps, y)
            if close(got, want, atol=1e-4):
                continue
            suspects = [
                (_ref_sdedit(model, x, eps, 1.0, steps, y),
                 "that is a fresh sample from eps: the start must still hold (1 - strength) of the image"),
                (flow.integrate(model, tuple(x.shape), noise=x, timesteps=torch.linspace(strength, 0, steps + 1),
                                cond={"y": y}, progress=False),
                 "noise the image to t = strength first: the model expects x_t, not the clean image"),
                (flow.integrate(model, tuple(x.shape), noise=(1 - strength) * x + strength * eps,
                                timesteps=torch.linspace(1, 0, steps + 1), cond={"y": y}, progress=False),
                 "the sampler starts where the image was noised to: its grid runs from t = strength down to 0"),
                (flow.integrate(model, tuple(x.shape), noise=strength * x + (1 - strength) * eps,
                    timesteps=torch.linspace(strength, 0, steps + 1), cond={"y": y}, progress=False),
                 "at t = strength the image's share is (1 - strength): t = 1 is pure noise"),
            ]
            hint = next((h for v, h in suspects if close(got, v, atol=1e-4)), None) or (
                "noise the image to t = strength, then take `steps` equal Euler steps down to t = 0, the model read "
                "at the start of each step with the labels")
            raise CheckFailed(f"{name}: wrong edit for strength {strength}, {steps} steps (off by up to "
                              f"{float((got - want).abs().max()):.3g}). Hint: {hint}.")
    ok(name, "noises to the strength and integrates back like editing.sdedit, at 3 strengths")


def check_put_back(fn: Callable) -> None:
    """fn(x, known, mask, eps, t) -> x with its known region (mask 1) replaced by the known image on its own path to t,
    (1 - t) known + t eps; the unknown region (mask 0) untouched."""
    name = "put_back"
    g = torch.Generator().manual_seed(93)
    x, known, eps = (torch.randn(2, 1, 6, 6, generator=g) for _ in range(3))
    mask = (torch.rand(2, 1, 6, 6, generator=g) > 0.5).float()
    for t in (0.7, 0.0, 1.0):
        got = as_tensor(call(fn, name, x.clone(), known.clone(), mask.clone(), eps.clone(), t),
                        f"{name}(t={t})", tuple(x.shape))
        want = mask * ((1 - t) * known + t * eps) + (1 - mask) * x
        if close(got, want, atol=1e-6):
            continue
        suspects = [
            (mask * x + (1 - mask) * ((1 - t) * known + t * eps), "the mask is 1 where the image is known"),
            (mask * known + (1 - mask) * x,
             "the known region must be noised to the current t like the rest of x, not clean"),
            (mask * (t * known + (1 - t) * eps) + (1 - mask) * x, "at time t the image's share is (1 - t)"),
            ((1 - t) * known + t * eps, "keep the model's own x where the mask is 0"),
        ]
        hint = next((h for v, h in suspects if close(got, v, atol=1e-6)), None) or (
            "blend with the mask: the known image on its path to t where mask = 1, x where mask = 0")
        raise CheckFailed(f"{name}: wrong x at t = {t}. Hint: {hint}.")
    ok(name, "puts the known region back on its path at t = 0.7, 0 and 1 and keeps the rest")


def _ref_target(teacher, x, t, t_mid, t_next, y):
    tb = torch.full((x.shape[0],), t)
    x_mid = x + (t_mid - t) * teacher(x, tb, y=y)
    x_next = x_mid + (t_next - t_mid) * teacher(x_mid, torch.full_like(tb, t_mid), y=y)
    return (x_next - x) / (t_next - t)


def check_distillation_target(fn: Callable) -> None:
    """fn(teacher, x_t, t, t_mid, t_next, y) -> the velocity v* of one step t -> t_next that lands where two teacher
    Euler steps (t -> t_mid -> t_next, the teacher read with labels y) land."""
    name = "distillation_target"
    teacher = random_unet(94)
    g = torch.Generator().manual_seed(95)
    x = torch.randn(3, 1, 8, 8, generator=g)
    y = torch.tensor([0, 5, 3])
    with torch.no_grad():
        for t, t_mid, t_next in ((1.0, 0.75, 0.5), (0.4, 0.3, 0.0)):
            got = as_tensor(call(fn, name, teacher, x.clone(), t, t_mid, t_next, y.clone()),
                            f"{name}(t={t}, t_mid={t_mid}, t_next={t_next})", tuple(x.shape))
            want = _ref_target(teacher, x, t, t_mid, t_next, y)
            if close(got, want, atol=1e-4):
                continue
            tb = torch.full((3,), t)
            one = teacher(x, tb, y=y)
            x_mid = x + (t_mid - t) * one
            x_next = x_mid + (t_next - t_mid) * teacher(x_mid, torch.full_like(tb, t_mid), y=y)
            x_stale = x_mid + (t_next - t_mid) * teacher(x_mid, tb, y=y)
            suspects = [
                (one, "that is the teacher's one-step velocity; the student must learn where TWO steps land"),
                (x_next, "return a velocity, not the point: divide the displacement by the time it spans"),
                ((x_next - x) / (t_mid - t), "the student's step spans t -> t_next, twice the teacher's"),
                ((x - x_next) / (t_next - t), "mind the sign: v* = (x_next - x_t) / (t_next - t)"),
                ((x_stale - x) / (t_next - t), "read the teacher's second step at t_mid, where it starts"),
            ]
            hint = next((h for v, h in suspects if close(got, v, atol=1e-4)), None) or (
                "two teacher Euler steps from x_t, then the single velocity that covers the same displacement")
            raise CheckFailed(f"{name}: wrong target for t = {t} -> {t_mid} -> {t_next} (off by up to "
                              f"{float((got - want).abs().max()):.3g}). Hint: {hint}.")
    ok(name, "matches two teacher Euler steps on two grids")


def check_lora_forward(fn: Callable) -> None:
    """fn(x, weight, bias, A, B, scale) -> x W^T + b + scale * (x A^T) B^T: a frozen linear layer plus its low-rank
    update (A: (r, in), B: (out, r))."""
    name = "lora_forward"
    g = torch.Generator().manual_seed(96)
    x = torch.randn(4, 5, 12, generator=g)
    w, b = torch.randn(10, 12, generator=g), torch.randn(10, generator=g)
    a, bb = torch.randn(3, 12, generator=g), torch.randn(10, 3, generator=g)
    scale = 0.5
    got = as_tensor(call(fn, name, x.clone(), w.clone(), b.clone(), a.clone(), bb.clone(), scale), name, (4, 5, 10))
    want = x @ w.T + b + scale * (x @ a.T) @ bb.T
    if not close(got, want, atol=1e-4):
        base = x @ w.T + b
        suspects = [
            (base + (x @ a.T) @ bb.T, "scale the update by alpha / r (`scale`)"),
            (scale * (base + (x @ a.T) @ bb.T), "scale only the low-rank update, not the frozen layer's output"),
            (x @ w.T + scale * (x @ a.T) @ bb.T, "the frozen layer keeps its bias"),
            (base, "add the low-rank update"),
        ]
        hint = next((h for v, h in suspects if close(got, v, atol=1e-4)), None) or (
            "the frozen layer's output plus the update: x goes down to r numbers through A, back up through B")
        raise CheckFailed(f"{name}: wrong output (off by up to {float((got - want).abs().max()):.3g}). Hint: {hint}.")
    zero = as_tensor(call(fn, name, x.clone(), w.clone(), b.clone(), a.clone(), torch.zeros_like(bb), scale),
                     name, (4, 5, 10))
    if not close(zero, x @ w.T + b, atol=1e-5):
        raise CheckFailed(f"{name}: with B = 0 the layer must be the frozen one exactly. Hint: the update is B A x.")
    ok(name, "the frozen layer plus the scaled low-rank update, and exactly the frozen layer when B = 0")
