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
@pytest.mark.parametrize("use_clipped_model_output", [False, True])
def test_ddim_steps_equal_diffusers(ours, theirs, eta, steps, use_clipped_model_output):
    """Both clipping variants equal diffusers' DDIMScheduler: keeping the model's eps (diffusers' default,
    use_clipped_model_output=False) and re-deriving it from the clipped x0 (ours)."""
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
        out = ref.step(eps, t, x, eta=eta, use_clipped_model_output=use_clipped_model_output,
                       generator=torch.Generator().manual_seed(i))
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        mine, x0_hat = ddim.ddim_step(s, eps, x, t, t_prev, eta, z,
                                      use_clipped_model_output=use_clipped_model_output)
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
    z = ddim.ddim_invert(model, s, x0, steps=50, cond={"y": y}, progress=False)
    rec = ddim.ddim_sample(model, s, x0.shape, steps=50, cond={"y": y}, noise=z, progress=False)
    err = (rec - x0).abs().mean().item()
    assert err < 0.1, f"mean absolute reconstruction error {err:.3f}"
    assert abs(z.std().item() - 1) < 0.35  # the inverted latent looks like noise


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_full_sequence_is_ancestral(clip):
    from minidiff import ddpm

    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(0)
    xt, eps, z = (torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64) * 3 for _ in range(3))
    for t in (999, 500, 1):  # big inputs: with clip=True, x0_hat is clipped at every one of these steps
        # DDIM with eta = 1 between neighbouring steps is exactly DDPM's ancestral step, with or without clipping
        # (with clipping because eps is re-derived from the clipped x0_hat, as the posterior mean uses it)
        a, x0a = ddim.ddim_step(s, eps, xt, t, t - 1, eta=1.0, noise=z, clip_denoised=clip)
        b, x0b = ddpm.p_sample(s, eps, xt, t, z, clip_denoised=clip)
        # (p_sample's posterior coefficients are float32: near t = 0 they round to ~1e-4 of the result)
        torch.testing.assert_close(a, b, atol=2e-3 if t < 10 else 1e-5, rtol=1e-4)
        if clip:
            assert (x0a.abs() == 1).any()
            keep, _ = ddim.ddim_step(s, eps, xt, t, t - 1, eta=1.0, noise=z, use_clipped_model_output=False)
            assert (keep - b).abs().max() > 1e-2  # diffusers' default is not the ancestral step once it clips


def _ddim_quality(model, s, judge, steps, use_clipped_model_output=True):
    y = torch.arange(10)
    noise = torch.randn((10, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    x = ddim.ddim_sample(model, s, noise.shape, steps=steps, cond={"y": y}, noise=noise, progress=False,
                         use_clipped_model_output=use_clipped_model_output)
    with torch.no_grad():
        logp = judge(x.clamp(-1, 1)).log_softmax(-1)[torch.arange(10), y]
    return x, logp


def _not_worse(x_many, lp_many, x_few, lp_few) -> bool:
    """DDIM with many steps converges towards the ODE's solution: its samples stay close to the few-step ones from
    the same noise and the judge's log-probability of the requested digit drops by less than 3 standard errors
    (paired over the 10 samples)."""
    d = lp_many - lp_few
    return bool((x_many - x_few).pow(2).mean().sqrt() < 0.1 and d.mean() > -3 * d.std() / len(d) ** 0.5 - 0.05)


def test_ddim_1000_steps_is_not_worse_than_50_on_the_shipped_model():
    from minidiff.pretrained import load_pretrained

    model, card = load_pretrained("ddpm-digits")
    judge, _ = load_pretrained("digit-classifier")
    s = make_schedule(card["recipe_config"]["schedule"], card["recipe_config"]["T"])
    few = _ddim_quality(model, s, judge, 50)
    assert _not_worse(*_ddim_quality(model, s, judge, 1000), *few)
    # the same check catches diffusers' default (keep the model's eps after clipping), which drifts with more steps
    assert not _not_worse(*_ddim_quality(model, s, judge, 1000, use_clipped_model_output=False),
                          *_ddim_quality(model, s, judge, 50, use_clipped_model_output=False))


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

    def model(x, t):  # our models take t in [0, 1]; diffusers' timesteps are t * 1000
        return torch.tanh(x) * t.reshape(-1, 1, 1, 1)

    x1 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = x1.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, (t / 1000).expand(2)), t, x).prev_sample
    mine = flow.euler_sample(model, x1.shape, steps=steps, shift=shift, noise=x1, progress=False)
    torch.testing.assert_close(mine, x, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_heun_sampler_equals_diffusers_flow_match_heun(shift):
    from diffusers import FlowMatchHeunDiscreteScheduler

    ref = FlowMatchHeunDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    ref.set_timesteps(6)  # its grid ends 0.001, 0: hand ours the same points (each sigma once)
    grid = torch.cat([ref.sigmas[:1], ref.sigmas[1:-1:2], ref.sigmas[-1:]]).double()

    def model(x, t):
        return torch.tanh(x) * (0.5 + t.reshape(-1, 1, 1, 1)) - 0.3 * x.roll(1, dims=-1)

    x1 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = x1.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, (t / 1000).expand(2)), t, x).prev_sample
    mine = flow.heun_sample(model, x1.shape, timesteps=grid, noise=x1, progress=False)
    torch.testing.assert_close(mine, x, atol=1e-5, rtol=1e-5)


def test_heun_is_second_order_and_euler_first_order():
    """Halving the step divides Heun's error by about 4 and Euler's by about 2 (a smooth field; reference: 2,000
    Heun steps). Model calls: Heun with N steps costs 2N - 1."""
    calls = []

    def model(x, t):
        calls.append(1)
        return torch.tanh(x) * (0.5 + t.reshape(-1, 1)) - 0.3 * x.roll(1, dims=-1)

    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    run = dict(noise=x1, progress=False)
    exact = flow.heun_sample(model, x1.shape, steps=2000, **run).double()
    err = {(name, n): float((f(model, x1.shape, steps=n, **run).double() - exact).abs().max())
           for name, f in (("euler", flow.euler_sample), ("heun", flow.heun_sample)) for n in (8, 16, 32)}
    for n in (8, 16):
        assert 1.7 < err["euler", n] / err["euler", 2 * n] < 2.3, err
        assert 3.2 < err["heun", n] / err["heun", 2 * n] < 4.8, err
    assert err["heun", 8] < err["euler", 16]  # fewer model calls (15 vs 16), smaller error
    calls.clear()
    flow.heun_sample(model, x1.shape, steps=8, **run)
    assert len(calls) == 15


def test_heun_sampler_refuses_bad_input_clearly():
    def model(x, t):
        return x

    with pytest.raises(ValueError, match="steps must be a positive integer"):
        flow.heun_sample(model, (2, 3), steps=0, progress=False)
    with pytest.raises(ValueError, match="timesteps must be a decreasing grid"):
        flow.heun_sample(model, (2, 3), timesteps=torch.tensor([0.0, 1.0]), progress=False)
    with pytest.raises(ValueError, match="noise"):
        flow.heun_sample(model, (2, 3), noise=torch.zeros(4, 3), progress=False)
    with pytest.raises(FloatingPointError, match="Heun sampling produced NaN"):
        flow.heun_sample(lambda x, t: x * float("nan"), (2, 3), steps=2, progress=False)


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
    with pytest.raises(ValueError, match=r"shift gamma must lie in \[0.001, 1000\]"):
        flow.time_shift(0.0, torch.tensor(0.5))
    with pytest.raises(ValueError, match="positive integer"):
        flow.euler_timesteps(0)
    with pytest.raises(ValueError, match="noise must have"):
        flow.interpolate(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match=r"cond\['y'\] has shape \(3,\).*batch size 2"):
        flow.euler_sample(lambda x, t, y: x, (2, 1, 2, 2), cond={"y": torch.zeros(3, dtype=torch.long)},
                          progress=False)
    with pytest.raises(ValueError, match="noise has shape"):
        flow.euler_sample(lambda x, t: x, (2, 1, 2, 2), noise=torch.zeros(3, 1, 2, 2), progress=False)


@pytest.mark.parametrize("name", ["moons", "spiral", "checkerboard", "gaussians"])
def test_toys_are_deterministic_and_scaled(name):
    from minidiff.data import make_toy

    a, b = make_toy(name, 2000, seed=1), make_toy(name, 2000, seed=1)
    assert a.shape == (2000, 2) and torch.equal(a, b)
    assert not torch.equal(a, make_toy(name, 2000, seed=2))
    assert 0.5 < float(a.std()) < 2.0


def test_toy_and_mlp_errors():
    from minidiff.data import make_toy
    from minidiff.models.mlp import VelocityMLP

    with pytest.raises(ValueError, match="unknown toy"):
        make_toy("donut", 10)
    with pytest.raises(ValueError, match="positive integer"):
        make_toy("moons", 0)
    m = VelocityMLP()
    assert m(torch.randn(5, 2), torch.rand(5)).shape == (5, 2)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        m(torch.randn(5, 3), torch.rand(5))


def test_flow_matching_learns_a_toy_quickly():
    """1000 steps of a small MLP (~2 s) move N(0, I) onto the ring of 8 Gaussians (radius 1.4), covering every mode.

    Measured with seed 0: median radius 1.399, 0.3 % of samples inside radius 0.7, every mode 11-14 % of samples.
    An untrained model leaves a Gaussian blob (median radius ~1.2, ~22 % inside 0.7), which fails these bounds.
    """
    import math

    from minidiff.data import make_toy
    from minidiff.models.mlp import VelocityMLP, VelocityMLPConfig
    from minidiff.train import TrainConfig, train

    torch.manual_seed(0)
    pts = make_toy("gaussians", 4000)
    r = train(VelocityMLP(VelocityMLPConfig(hidden=64)),
              lambda m, x, y, g: flow.flow_loss(m, x, generator=g, logit_normal=False),
              (pts, None), TrainConfig(steps=1000, batch_size=256, lr=2e-3, ema_decay=0.99, bf16=False, seed=0),
              progress=False)
    s = flow.euler_sample(r.ema, (2000, 2), steps=30, generator=torch.Generator().manual_seed(0), progress=False)
    radius = s.norm(dim=1)
    assert abs(float(radius.median()) - 1.4) < 0.1
    assert float((radius < 0.7).float().mean()) < 0.03
    mode = torch.round(torch.atan2(s[:, 1], s[:, 0]) / (2 * math.pi / 8)).long() % 8
    share = torch.bincount(mode, minlength=8).float() / len(s)
    assert float(share.min()) > 0.06, f"a mode is missing: {share.tolist()}"


def test_unified_step_reproduces_ddim_and_euler():
    s = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(0)
    x0, eps, pred = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    a_t, b_t = s.sqrt_alphas_cumprod[700], s.sqrt_one_minus_alphas_cumprod[700]
    xt = a_t * x0 + b_t * eps
    want, _ = ddim.ddim_step(s, pred, xt, 700, 400, clip_denoised=False)
    got = flow.unified_step(s.sqrt_alphas_cumprod[400], s.sqrt_one_minus_alphas_cumprod[400], (xt - b_t * pred) / a_t,
                            pred)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    t = torch.full((2,), 0.7)
    xtf = flow.interpolate(x0, eps, t)
    torch.testing.assert_close(flow.unified_step(0.6, 0.4, *flow.estimates_from_velocity(xtf, pred, t)),
                               xtf - 0.3 * pred, atol=1e-5, rtol=1e-5)


def test_shipped_flow_model_loads():
    from minidiff.pretrained import load_pretrained

    m, card = load_pretrained("flow-digits")
    assert card["recipe"] == "flow-digits"
    assert m(torch.randn(2, 1, 16, 16), torch.tensor([0.0, 0.999]), torch.tensor([3, 10])).shape == (2, 1, 16, 16)


class _GaussianVelocity(torch.nn.Module):
    """The exact velocity field for data N(0, s0^2 I): v(x, t) = (t - (1 - t) s0^2) / var_t * x."""

    def __init__(self, s0: float):
        super().__init__()
        self.s0 = s0
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def var(self, t):
        return (1 - t) ** 2 * self.s0**2 + t**2

    def forward(self, x, t):
        t = t.reshape(-1, *([1] * (x.ndim - 1)))
        return (t - (1 - t) * self.s0**2) / self.var(t) * x


def test_score_from_velocity_is_the_exact_score_on_gaussian_data():
    m = _GaussianVelocity(0.5)
    x, t = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.0], dtype=torch.float64)
    want = -x / m.var(t)[:, None]                      # grad log N(0, var_t) = -x / var_t
    assert torch.allclose(flow.score_from_velocity(x, m(x, t), t), want)
    with pytest.raises(ValueError, match="t > 0"):
        flow.score_from_velocity(x, m(x, t), torch.zeros(6))


def test_sde_sampler_keeps_the_marginals_and_churn_zero_is_euler():
    m = _GaussianVelocity(0.5)
    z = torch.randn(4000, 1, generator=torch.Generator().manual_seed(0))
    ode = flow.sde_sample(m, z.shape, steps=20, churn=0.0, noise=z, progress=False)
    assert torch.allclose(ode, flow.euler_sample(m, z.shape, steps=20, noise=z, progress=False))
    for churn in (1.0, 4.0):
        x = flow.sde_sample(m, z.shape, steps=400, churn=churn, noise=z, generator=torch.Generator().manual_seed(1),
                            progress=False)
        assert abs(float(x.std()) - 0.5) < 0.03, (churn, float(x.std()))
        assert not torch.allclose(x, ode, atol=1e-3)      # the fresh noise changes the path, not the distribution


def test_sde_sampler_records_its_trajectory_like_euler():
    m = _GaussianVelocity(0.5)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    x, traj = flow.sde_sample(m, z.shape, steps=10, churn=1.0, noise=z, trajectory=True,
                              generator=torch.Generator().manual_seed(1), progress=False)
    assert len(traj) == 11 and torch.equal(traj[0].x, z) and torch.equal(traj[-1].x, x)
    assert [round(s.t, 6) for s in traj] == [round(float(t), 6) for t in flow.euler_timesteps(10)]
    again = flow.sde_sample(m, z.shape, steps=10, churn=1.0, noise=z, generator=torch.Generator().manual_seed(1),
                            progress=False)
    assert torch.equal(again, x)                          # a seed gives the same samples, trajectory or not


def test_score_sde_and_attention_weights_refuse_bad_input_clearly():
    from minidiff.models.layers import attention_weights

    m = _GaussianVelocity(0.5)
    x, t = torch.randn(4, 2), torch.full((4,), 0.5)
    with pytest.raises(ValueError, match="v must have x_t's shape"):
        flow.score_from_velocity(x, torch.randn(4, 3), t)
    with pytest.raises(ValueError, match=r"t must have shape \(4,\)"):
        flow.score_from_velocity(x, x, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        flow.score_from_velocity(x, x, torch.full((4,), float("nan")))
    for churn in (-1.0, float("nan"), None):
        with pytest.raises(ValueError, match="churn"):
            flow.sde_sample(m, (4, 2), steps=3, churn=churn, progress=False)
    with pytest.raises(ValueError, match="steps"):
        flow.sde_sample(m, (4, 2), steps=0, progress=False)
    for churn in (-1.0, float("nan")):                      # the shared core checks at its own entry too
        with pytest.raises(ValueError, match="churn"):
            flow.integrate(m, (4, 2), steps=3, churn=churn, progress=False)
    with pytest.raises(ValueError, match="method must be 'euler' or 'heun'"):
        flow.integrate(m, (4, 2), steps=3, method="rk4", progress=False)
    with pytest.raises(ValueError, match="Heun's correction is for the ODE"):
        flow.integrate(m, (4, 2), steps=3, method="heun", churn=1.0, progress=False)
    with pytest.raises(ValueError, match="same B, H and d"):
        attention_weights(torch.randn(2, 4, 5, 8), torch.randn(2, 3, 5, 8))
    with pytest.raises(ValueError, match=r"\(B, H, L, d\)"):
        attention_weights(torch.randn(4, 5, 8), torch.randn(4, 5, 8))
    a = attention_weights(torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8))
    assert a.shape == (2, 4, 5, 7) and torch.allclose(a.sum(-1), torch.ones(2, 4, 5))
