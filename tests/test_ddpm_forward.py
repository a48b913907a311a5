import pytest
import torch

from minidiff.ddpm import forward_step, q_sample
from minidiff.schedules import make_schedule


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [0, 100, 500, 999])
def test_q_sample_statistics_match_closed_form(name, t):
    s = make_schedule(name, 1000)
    g = torch.Generator().manual_seed(t)
    x0 = torch.full((40_000, 1, 1, 1), 0.7)
    noise = torch.randn(x0.shape, generator=g)
    xt = q_sample(s, x0, noise, t).flatten().double()
    mean, var = float(xt.mean()), float(xt.var())
    want_mean = 0.7 * float(s.sqrt_alphas_cumprod[t])
    want_var = 1 - float(s.alphas_cumprod[t])
    n = x0.shape[0]
    assert abs(mean - want_mean) < 5 * (want_var / n) ** 0.5 + 1e-6
    assert abs(var - want_var) < 5 * want_var * (2 / n) ** 0.5 + 1e-6


def test_variance_is_preserved_for_unit_variance_data():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(50_000, 1, 1, 1, generator=g)
    for t in (0, 300, 999):
        var = float(q_sample(s, x0, torch.randn(x0.shape, generator=g), t).var())
        assert abs(var - 1) < 0.03


def test_step_by_step_chain_matches_closed_form_in_distribution():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(1)
    x = torch.full((20_000,), -0.5)
    for t in range(300):
        x = forward_step(x, s.betas[t], torch.randn(x.shape, generator=g))
    assert abs(float(x.mean()) - (-0.5) * float(s.sqrt_alphas_cumprod[299])) < 0.03
    assert abs(float(x.var()) - (1 - float(s.alphas_cumprod[299]))) < 0.03


def test_q_sample_per_sample_timesteps():
    s = make_schedule("linear", 1000)
    x0 = torch.ones(3, 1, 2, 2)
    noise = torch.zeros_like(x0)
    out = q_sample(s, x0, noise, torch.tensor([0, 10, 999]))
    torch.testing.assert_close(out[:, 0, 0, 0], s.sqrt_alphas_cumprod[[0, 10, 999]])


def test_q_sample_works_for_videos():
    s = make_schedule("cosine", 1000)
    x0 = torch.zeros(2, 3, 5, 4, 4)
    assert q_sample(s, x0, torch.randn(x0.shape), torch.tensor([3, 4])).shape == x0.shape


@pytest.mark.parametrize("bad_t", [1000, -1, torch.tensor([0, 1000]), torch.tensor([-3, 2])])
def test_q_sample_t_out_of_range(bad_t):
    s = make_schedule("linear", 1000)
    with pytest.raises(ValueError, match=r"out of range.*T=1000.*0\.\.999"):
        q_sample(s, torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), bad_t)


def test_q_sample_bad_shapes_and_dtypes():
    s = make_schedule("linear", 1000)
    x0 = torch.zeros(2, 1, 4, 4)
    noise = torch.zeros_like(x0)
    with pytest.raises(ValueError, match="noise must have x0's shape"):
        q_sample(s, x0, torch.zeros(2, 1, 4, 5), 3)
    with pytest.raises(ValueError, match="noise before t"):  # the old (x0, t, noise) order
        q_sample(s, x0, torch.tensor([1, 2]), noise)
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\)"):
        q_sample(s, x0, noise, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integer timesteps"):
        q_sample(s, x0, noise, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="batched tensor"):
        q_sample(s, torch.zeros(4), torch.zeros(4), 3)
