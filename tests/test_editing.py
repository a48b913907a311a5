"""SDEdit and inpainting (minidiff.editing): the properties that define them, on a simple model."""

import pytest
import torch

from minidiff import editing, flow
from minidiff.models.unet import UNet, UNetConfig

SMALL = UNetConfig(image_size=8, in_channels=1, channels=(8, 16), num_classes=None, groups=4, time_factor=1000.0)


def _model():
    torch.manual_seed(0)
    m = UNet(SMALL).eval()
    for p in m.parameters():  # the U-Net starts with a zero output layer: give it a non-zero velocity
        p.data += 0.05 * torch.randn_like(p)
    return m


def test_inpainting_keeps_the_known_pixels_exactly_and_fills_the_rest():
    m, known = _model(), torch.rand(2, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1  # keep the left half
    out = editing.inpaint(m, known, mask, steps=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out[..., :4], known[..., :4])
    assert not torch.allclose(out[..., 4:], known[..., 4:])
    assert torch.equal(editing.inpaint(m, known, torch.ones_like(known), steps=3), known)


def test_sdedit_at_strength_0_is_the_image_and_at_1_a_sample_from_its_noise():
    m, x = _model(), torch.rand(2, 1, 8, 8) * 2 - 1
    assert torch.equal(editing.sdedit(m, x, 0.0), x)
    out = editing.sdedit(m, x, 1.0, steps=6, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out, flow.euler_sample(m, x.shape, steps=6, noise=eps, progress=False), atol=1e-6)


def test_sdedit_strength_moves_the_result_away_from_the_image():
    """Half-way keeps more of the image than a fresh sample does (same noise)."""
    m, x = _model(), torch.rand(4, 1, 8, 8) * 2 - 1
    dist = [float((editing.sdedit(m, x, s, steps=10, generator=torch.Generator().manual_seed(0)) - x).pow(2).mean())
            for s in (0.0, 0.5, 1.0)]
    assert dist[0] == 0 < dist[1] < dist[2], dist


@pytest.mark.parametrize("call, words", [
    (lambda m, x: editing.sdedit(m, x, 1.5), ["strength", "1.5"]),
    (lambda m, x: editing.inpaint(m, x, torch.ones(3, 3)), ["mask", "(3, 3)", "does not fit"]),
    (lambda m, x: editing.inpaint(m, x, torch.full_like(x, 0.5)), ["0 (fill) or 1 (keep)"]),
    (lambda m, x: editing.inpaint(m, x, [[1, 0]]), ["mask must be a tensor"]),
])
def test_editing_refuses_bad_input_clearly(call, words):
    with pytest.raises(ValueError) as e:
        call(_model(), torch.zeros(2, 1, 8, 8))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_inversion_then_sampling_returns_the_image_and_the_grid_may_run_upwards():
    """Euler inversion reads each slope at the other end of its interval from the sampler: the round trip's gap
    shrinks as the steps grow (first order); only an explicit `invert` runs the ODE from data to noise."""
    m, x = _model(), torch.rand(3, 1, 8, 8) * 2 - 1
    gaps = []
    for steps in (5, 20, 80):
        noise = editing.invert(m, x, steps=steps)
        back = flow.euler_sample(m, x.shape, steps=steps, noise=noise, progress=False)
        gaps.append(float((back - x).abs().max()))
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.25 * gaps[0], gaps
    grid = flow.euler_timesteps(4).flip(0)
    by_hand = x.clone()
    for t0, t1 in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        by_hand = by_hand + (t1 - t0) * m(by_hand, torch.full((3,), t0))
    assert torch.allclose(editing.invert(m, x, steps=4), by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="churn = 0"):
        flow.integrate(m, x.shape, noise=x, timesteps=grid, churn=1.0, progress=False, invert=True)
    with pytest.raises(ValueError, match="increasing grid"):
        flow.integrate(m, x.shape, noise=x, timesteps=[0.0, 0.5, 0.4, 1.0], progress=False, invert=True)
    with pytest.raises(ValueError, match="decreasing grid"):  # a sampler never silently runs backwards
        flow.integrate(m, x.shape, noise=x, timesteps=grid, progress=False)
