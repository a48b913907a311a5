import pytest
import torch

from minidiff import ddim, flow
from minidiff.schedules import make_schedule

diffusers = pytest.importorskip("diffusers")


def _f64_ref(ref, ours):
    ref.betas = make_schedule(ours, 1000).betas.double()
    ref.alphas = 1 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, 0)
    ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)


@pytest.mark.parametrize("ours,theirs", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_steps_equal_diffusers(ours, theirs, eta, steps):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(num_train_timesteps=1000, beta_schedule=theirs, beta_start=1e-4, beta_end=0.02,
                        clip_sample=True, set_alpha_to_one=True)
    _f64_ref(ref, ours)  # compare the algorithm in float64 (see test_ddpm_reverse)
    ref.set_timesteps(steps)
    ts = ddim.ddim_timesteps(1000, steps)
    assert ref.timesteps.tolist() == ts
    s = make_schedule(ours, 1000)
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    for i, t in enumerate(ts):  # step by step along the reference's own trajectory
        eps = torch.sin(3 * x) * 0.7 + 0.01 * t  # a fixed smooth "model"
        out = ref.step(eps, t, x, eta=eta, generator=torch.Generator().manual_seed(i))
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        mine, x0_hat = ddim.ddim_step(s, eps, x, t, t_prev, eta, z)
        torch.testing.assert_close(x0_hat, out.pred_original_sample, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mine, out.prev_sample, atol=1e-5, rtol=1e-4)
        x = out.prev_sample


def test_inversion_then_sampling_reconstructs_with_the_shipped_model():
    from minidiff.data import load_digits
    from minidiff.pretrained import load_pretrained

    model, card = load_pretrained("ddpm-digits")
    s = make_schedule(card["recipe_config"]["schedule"], card["recipe_config"]["T"])
    x0, y = load_digits(16, split="reference")
    x0, y = x0[:8], y[:8]
    z = ddim.ddim_invert(model, s, x0, steps=50, labels=y, progress=False)
    rec = ddim.ddim_sample(model, s, x0.shape, steps=50, labels=y, x_T=z, progress=False)
    err = (rec - x0).abs().mean().item()
    assert err < 0.1, f"mean absolute reconstruction error {err:.3f}"
    assert abs(z.std().item() - 1) < 0.35  # the inverted latent looks like noise


def test_ddim_eta1_full_sequence_is_ancestral():
    from minidiff import ddpm

    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    xt, eps, z = (torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    # without clipping, DDIM with eta = 1 between neighbouring steps is exactly DDPM's ancestral step
    a, _ = ddim.ddim_step(s, eps, xt, 500, 499, eta=1.0, noise=z, clip_denoised=False)
    b, _ = ddpm.p_sample(s, eps, xt, 500, z, clip_denoised=False)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_ddim_bad_inputs():
    s = make_schedule("linear", 1000)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim.check_timesteps([10, 20, 0], 1000)
    with pytest.raises(ValueError, match="out of range"):
        ddim.check_timesteps([1000, 0], 1000)
    with pytest.raises(ValueError, match="empty"):
        ddim.check_timesteps([], 1000)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            ddim.ddim_timesteps(1000, bad)
    with pytest.raises(ValueError, match="more than the model's T"):
        ddim.ddim_timesteps(1000, 2000)
    with pytest.raises(ValueError, match="eta must lie"):
        ddim.ddim_step(s, torch.zeros(1, 1), torch.zeros(1, 1), 10, 5, eta=1.5)


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(3, 1, 16, 16, generator=g), torch.randn(3, 1, 16, 16, generator=g)
    torch.testing.assert_close(ddim.slerp(z0, z1, 0.0), z0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim.slerp(z0, z1, 1.0), z1, atol=1e-5, rtol=1e-5)
    mid = ddim.slerp(z0, z1, 0.5)
    assert abs(mid.flatten(1).norm(dim=1).mean() / z0.flatten(1).norm(dim=1).mean() - 1) < 0.1
    with pytest.raises(ValueError, match="same shape"):
        ddim.slerp(z0, z1[:2], 0.5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_sampler_and_grid_equal_diffusers(shift):
    from diffusers import FlowMatchEulerDiscreteScheduler

    steps = 10
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    ref.set_timesteps(sigmas=torch.linspace(1, 0, steps + 1)[:-1].tolist())
    ours = flow.euler_timesteps(steps, shift)
    torch.testing.assert_close(ours.float(), ref.sigmas.float(), atol=1e-6, rtol=1e-6)

    def model(x, t):
        return torch.tanh(x) * (t.reshape(-1, 1, 1, 1) / 1000)

    x1 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = x1.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, t.expand(2)), t, x).prev_sample
    mine = flow.euler_sample(model, x1.shape, steps=steps, shift=shift, x_1=x1, progress=False)
    torch.testing.assert_close(mine, x, atol=1e-5, rtol=1e-5)


def test_flow_definitions():
    x0, eps = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    xt = flow.interpolate(x0, eps, torch.tensor([0.0, 0.25]))
    assert xt[0].abs().max() == 0 and torch.allclose(xt[1], torch.full((1, 2, 2), 0.25))
    assert torch.equal(flow.velocity_target(x0, eps), eps)
    t = flow.logit_normal_t(10_000, torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1 and abs(t.mean().item() - 0.5) < 0.01
    assert flow.time_shift(3.0, torch.tensor(0.5)).item() == pytest.approx(0.75)
    # the oracle velocity makes the loss zero
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    tt = flow.logit_normal_t(2, g2)
    noise = torch.randn(x0.shape, generator=g2)
    assert tt.shape == (2,)
    assert flow.flow_loss(lambda x, t: noise - x0, x0, generator=g1).item() == 0.0


def test_flow_bad_inputs():
    with pytest.raises(ValueError, match="positive"):
        flow.time_shift(0.0, torch.tensor(0.5))
    with pytest.raises(ValueError, match="positive integer"):
        flow.euler_timesteps(0)
    with pytest.raises(ValueError, match="noise must have"):
        flow.interpolate(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="labels has 3"):
        flow.euler_sample(lambda x, t, y: x, (2, 1, 2, 2), labels=torch.zeros(3, dtype=torch.long), progress=False)
