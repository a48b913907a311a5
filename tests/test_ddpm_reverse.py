import pytest
import torch

from minidiff import ddpm
from minidiff.schedules import make_schedule

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("ours,theirs", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
@pytest.mark.parametrize("t", [999, 500, 37, 1, 0])
def test_ancestral_step_equals_diffusers(ours, theirs, t):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=theirs, variance_type="fixed_small",
                        clip_sample=True, beta_start=1e-4, beta_end=0.02)
    # diffusers re-derives beta_t from a ratio of float32 cumulative products, which loses ~1e-3 relative accuracy
    # on beta_t for small t; compare both in float64 so that what remains is the algorithm, not rounding
    ref.betas = make_schedule(ours, 1000).betas.double()
    ref.alphas = 1 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, 0)
    s = make_schedule(ours, 1000)
    g = torch.Generator().manual_seed(t)
    xt = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    out = ref.step(eps, t, xt, generator=torch.Generator().manual_seed(123))
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
    ours_prev, ours_x0 = ddpm.p_sample(s, eps, xt, t, noise)
    torch.testing.assert_close(ours_x0, out.pred_original_sample, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours_prev, out.prev_sample, atol=1e-5, rtol=1e-4)


def test_posterior_matches_bayes_closed_form_and_seed_form():
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([5, 200, 999])
    xt = ddpm.q_sample(s, x0, eps, t)
    mean, var = ddpm.q_posterior_mean_variance(s, x0, xt, t)
    betas = s.betas.double()
    abar = torch.cumprod(1 - betas, 0)  # float64 reference values
    for i, ti in enumerate(t.tolist()):
        b, a, ab = float(betas[ti]), 1 - float(betas[ti]), float(abar[ti])
        abp = float(abar[ti - 1]) if ti > 0 else 1.0
        want_var = b * (1 - abp) / (1 - ab)
        assert float(var[i]) == pytest.approx(want_var, rel=1e-5)
        # with the true eps, the posterior mean equals Ho et al.'s eps-form (eq. 11) 1/sqrt(a) (x_t - b/sqrt(1-ab) eps)
        seed_form = (xt[i] - b / (1 - ab) ** 0.5 * eps[i]) / a**0.5
        torch.testing.assert_close(mean[i], seed_form, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ddpm.predict_x0_from_eps(s, xt, t, eps), x0, atol=1e-3, rtol=1e-3)


def test_loss_is_zero_for_the_oracle_and_positive_otherwise():
    s = make_schedule("cosine", 1000)
    x0 = torch.randn(8, 1, 4, 4)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    # an oracle that knows the noise: rebuild it from the same generator stream
    t = torch.randint(0, 1000, (8,), generator=g2)
    noise = torch.randn(x0.shape, generator=g2)
    assert float(ddpm.ddpm_loss(lambda x, tt: noise, s, x0, generator=g1)) == 0.0
    assert t.shape == (8,)
    assert float(ddpm.ddpm_loss(lambda x, tt: torch.zeros_like(x), s, x0)) > 0.5


def test_sampler_same_seed_same_samples_and_trajectory():
    s = make_schedule("linear", 50)

    def model(x, t, y=None):
        return 0.1 * x

    a = ddpm.p_sample_loop(model, s, (2, 1, 4, 4), generator=torch.Generator().manual_seed(3), progress=False)
    b, traj = ddpm.p_sample_loop(model, s, (2, 1, 4, 4), generator=torch.Generator().manual_seed(3),
                                 trajectory=10, progress=False)
    assert torch.equal(a, b)
    assert [t for t, _, _ in traj] == [49, 39, 29, 19, 9, -1]  # every 10th step, then the end
    assert torch.equal(traj[-1].x, b) and torch.equal(traj[-1].x0_hat, b)
    _, every = ddpm.p_sample_loop(model, s, (2, 1, 4, 4), generator=torch.Generator().manual_seed(3),
                                  trajectory=True, progress=False)
    assert len(every) == 51
    with pytest.raises(ValueError, match=r"cond\['y'\] has shape \(3,\)"):
        ddpm.p_sample_loop(model, s, (2, 1, 4, 4), cond={"y": torch.zeros(3, dtype=torch.long)}, progress=False)
    with pytest.raises(ValueError, match="runs all T=50 steps"):
        ddpm.p_sample_loop(model, s, (2, 1, 4, 4), steps=10, progress=False)
