"""Progressive distillation (minidiff.distill): the target is two teacher steps; a field that two steps cannot
improve on gives zero loss; a real model does not."""

import copy

import pytest
import torch

from minidiff import distill, flow
from minidiff.models.unet import UNet, UNetConfig

SMALL = UNetConfig(image_size=8, in_channels=1, channels=(8, 16), num_classes=None, groups=4, time_factor=1000.0)


def _model():
    torch.manual_seed(0)
    m = UNet(SMALL).eval()
    for p in m.parameters():
        p.data += 0.05 * torch.randn_like(p)
    return m


def test_the_target_is_where_two_teacher_euler_steps_land():
    m, x = _model(), torch.randn(2, 1, 8, 8)
    t, t_mid, t_next = flow.euler_timesteps(8, shift=3.0).tolist()[2:5]
    got = distill.teacher_two_steps(m, x, t, t_mid, t_next)
    with torch.no_grad():  # the two Euler steps, written out
        x_mid = x + (t_mid - t) * m(x, torch.full((2,), t))
        want = x_mid + (t_next - t_mid) * m(x_mid, torch.full((2,), t_mid))
    assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="decreasing grid"):
        distill.teacher_two_steps(m, x, t_next, t_mid, t)


def test_a_straight_field_needs_no_distillation_and_a_curved_one_does():
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    straight = lambda x, t: torch.full_like(x, 0.3)  # noqa: E731 — the same velocity everywhere: 2 steps = 1 step
    loss = distill.progressive_distillation_loss(straight, straight, x0, 4, generator=torch.Generator().manual_seed(0))
    assert float(loss) < 1e-12
    m = _model()
    curved = distill.progressive_distillation_loss(copy.deepcopy(m), m, x0, 2,
                                                   generator=torch.Generator().manual_seed(0))
    assert curved.item() > 1e-6


def test_the_loss_trains_a_student():
    teacher, x0 = _model(), torch.rand(8, 1, 8, 8) * 2 - 1
    student = copy.deepcopy(teacher).train()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = distill.progressive_distillation_loss(student, teacher, x0, 1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < sum(losses[:5])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="student_steps must be an integer in 1.."):
        distill.progressive_distillation_loss(_model(), _model(), torch.zeros(2, 1, 8, 8), 0)
