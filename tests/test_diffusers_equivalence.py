"""Our schedules and forward process equal Hugging Face diffusers' DDPMScheduler (the peer implementation)."""

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import DDPMScheduler  # noqa: E402

from minidiff.ddpm import q_sample  # noqa: E402
from minidiff.schedules import make_schedule  # noqa: E402

PAIRS = [("linear", "linear"), ("cosine", "squaredcos_cap_v2")]


@pytest.mark.parametrize("ours,theirs", PAIRS)
@pytest.mark.parametrize("T", [1000, 50])
def test_alphas_cumprod_equal(ours, theirs, T):
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=theirs, beta_start=1e-4, beta_end=0.02)
    s = make_schedule(ours, T)
    torch.testing.assert_close(s.betas, ref.betas.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.alphas_cumprod, ref.alphas_cumprod.float(), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("ours,theirs", PAIRS)
def test_q_sample_equals_add_noise(ours, theirs):
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, beta_start=1e-4, beta_end=0.02)
    s = make_schedule(ours, 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(q_sample(s, x0, noise, t), ref.add_noise(x0, noise, t), atol=1e-5, rtol=1e-5)
