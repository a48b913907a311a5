"""The causal video VAE: shapes, causality (the first frame is encoded alone), KL, reparameterisation, errors."""

import pytest
import torch

from minidiff.models.vae import CausalConv3d, VAEConfig, VideoVAE, kl_divergence


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VideoVAE(VAEConfig()).eval()


@pytest.mark.parametrize("frames,t_lat", [(1, 1), (5, 2), (9, 3)])
def test_shapes_for_causal_frame_counts(vae, frames, t_lat):
    x = torch.rand(2, 3, frames, 32, 32) * 2 - 1
    with torch.no_grad():
        out = vae(x, generator=torch.Generator().manual_seed(0))
    assert out.mean.shape == out.logvar.shape == out.z.shape == (2, 4, t_lat, 16, 16)
    assert out.recon.shape == x.shape
    assert vae.latent_shape(frames, 32, 32) == (4, t_lat, 16, 16)


@pytest.mark.parametrize("k,s,frames,want", [(1, 1, 3, (4, 3, 32, 32)), (2, 4, 5, (4, 3, 8, 8)),
                                             (4, 4, 9, (4, 3, 8, 8))])
def test_other_compressions(k, s, frames, want):
    n = max({1: 0, 2: 1, 4: 2}[k], {1: 0, 2: 1, 4: 2}[s])
    m = VideoVAE(VAEConfig(spatial_compression=s, temporal_compression=k, channels=(16,) * (n + 1)))
    with torch.no_grad():
        mean, _ = m.encode(torch.zeros(1, 3, frames, 32, 32))
        assert tuple(mean.shape[1:]) == want
        assert m.decode(mean).shape == (1, 3, frames, 32, 32)


def test_first_frame_is_encoded_alone_and_latents_are_causal(vae):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        mean, _ = vae.encode(x)
        image_mean, _ = vae.encode(x[:, :, :1])  # the first frame as a 1-frame video (an image)
        torch.testing.assert_close(mean[:, :, :1], image_mean, atol=1e-5, rtol=1e-5)
        later = x.clone()
        later[:, :, 5:] = torch.rand(1, 3, 4, 32, 32, generator=g)  # change frames 5..8 only
        mean2, _ = vae.encode(later)
        torch.testing.assert_close(mean2[:, :, :2], mean[:, :, :2], atol=1e-5, rtol=1e-5)  # latents 0, 1 see <= 4
        assert not torch.allclose(mean2[:, :, 2], mean[:, :, 2])
        # the decoder is causal too: decoded frame 0 only depends on latent frame 0
        z2 = mean.clone()
        z2[:, :, 1:] += 1.0
        torch.testing.assert_close(vae.decode(z2)[:, :, 0], vae.decode(mean)[:, :, 0], atol=1e-5, rtol=1e-5)


def test_causal_conv_pads_the_past_only():
    conv = CausalConv3d(1, 1, (3, 1, 1))
    x = torch.zeros(1, 1, 6, 1, 1)
    x[:, :, 3] = 1.0
    with torch.no_grad():
        y = conv(x) - conv(torch.zeros_like(x))
    assert y[0, 0, :3].abs().max() == 0 and y[0, 0, 3:].abs().max() > 0  # no output before the impulse
    assert CausalConv3d(1, 1, (3, 3, 3), (2, 1, 1))(torch.zeros(1, 1, 9, 4, 4)).shape[2] == 5  # (9 - 1) / 2 + 1


def test_kl_is_non_negative_and_zero_only_at_the_prior():
    g = torch.Generator().manual_seed(2)
    mean, logvar = torch.randn(1000, generator=g) * 3, torch.randn(1000, generator=g) * 3
    kl = kl_divergence(mean, logvar)
    assert (kl >= 0).all() and kl.min() >= 0
    assert torch.equal(kl_divergence(torch.zeros(3), torch.zeros(3)), torch.zeros(3))
    # closed form equals a Monte-Carlo estimate of E_q[log q - log p] for one Gaussian
    m, lv = torch.tensor(0.7), torch.tensor(-0.4)
    z = m + (0.5 * lv).exp() * torch.randn(400_000, generator=g)
    log_q = -0.5 * ((z - m) ** 2 / lv.exp() + lv)
    log_p = -0.5 * z**2
    assert abs(float((log_q - log_p).mean() - kl_divergence(m, lv))) < 0.01


def test_reparameterisation_uses_mean_plus_std_times_noise(vae):
    x = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        out = vae(x, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(out.mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.z, out.mean + (0.5 * out.logvar).exp() * eps)


def test_loss_backpropagates_and_bad_input_is_a_clear_error(vae):
    m = VideoVAE(VAEConfig())
    loss = m.loss(torch.rand(2, 3, 5, 32, 32) * 2 - 1, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() > 0 and all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match=r"needs T = 4n \+ 1 frames"):
        vae.encode(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="divisible by the spatial compression"):
        vae.encode(torch.zeros(1, 3, 9, 31, 31))
    with pytest.raises(ValueError, match=r"expected videos \(B, 3, T, H, W\)"):
        vae.encode(torch.zeros(3, 9, 32, 32))
    with pytest.raises(ValueError, match="expected latents"):
        vae.decode(torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="must be 1, 2 or 4"):
        VAEConfig(temporal_compression=3)
    with pytest.raises(ValueError, match="channels needs 3 entries"):
        VAEConfig(channels=(16, 32))
    assert VAEConfig.from_dict(VAEConfig().to_dict()) == VAEConfig()


def test_shipped_video_vae_meets_its_card():
    from minidiff.data import moving_digits
    from minidiff.eval import judge_videos, psnr
    from minidiff.pretrained import load_pretrained

    vae, card = load_pretrained("video-vae")
    judge, _ = load_pretrained("digit-classifier")
    assert card["recipe"] == "video-vae" and card["train_minutes"] <= 15
    assert 0.1 < vae.config.scaling_factor < 10
    md = moving_digits(300, seed=100, split="heldout")  # held-out attribute combinations, never trained on
    with torch.no_grad():
        mean, _ = vae.encode(md.videos)
        recon = vae.decode(mean).clamp(-1, 1)
    m = card["metrics"]  # measured by benchmarks/video_world.py on 1,000 videos
    assert psnr(recon, md.videos) >= m["vae_psnr"] - 1.0
    acc = judge_videos(recon, judge, md.digits, md.colours, md.directions).accuracy
    assert acc["all_three"] >= m["judge_all_three_reconstructions"] - 0.03, acc
    # latents scaled by the factor have roughly unit spread, as the diffusion model expects
    assert 0.7 < float((mean * vae.config.scaling_factor).std()) < 1.3


def test_causal_pad_repeats_frame_zero_in_front():
    from minidiff.models.vae import causal_pad

    x = torch.arange(3.0).reshape(1, 1, 3, 1, 1).expand(2, 2, 3, 2, 2)
    y = causal_pad(x, 2)
    assert y.shape == (2, 2, 5, 2, 2)
    assert y[0, 0, :, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert causal_pad(x, 0) is x


def test_reparameterize_has_the_right_mean_and_std():
    from minidiff.models.vae import reparameterize

    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.full((200_000,), 1.5), torch.full((200_000,), 2 * torch.log(torch.tensor(0.3)))
    z = reparameterize(mean, logvar, torch.randn(200_000, generator=g))
    assert abs(float(z.mean()) - 1.5) < 0.005 and abs(float(z.std()) - 0.3) < 0.005
    mean.requires_grad_(True)
    reparameterize(mean, logvar, torch.randn(200_000, generator=g)).sum().backward()
    assert torch.allclose(mean.grad, torch.ones_like(mean))  # gradients reach the encoder through the sample


def test_latent_scaling_factor_gives_unit_variance():
    from minidiff.models.vae import latent_scaling_factor

    z = torch.randn(4000, generator=torch.Generator().manual_seed(1)) * 0.25
    f = latent_scaling_factor(z)
    assert abs(f - 4.0) < 0.1 and abs(float((z * f).std()) - 1.0) < 1e-5
    with pytest.raises(ValueError, match="zero spread"):
        latent_scaling_factor(torch.zeros(10))


def test_image_vae_shapes_training_signal_and_errors():
    from minidiff.models.vae import ImageVAE, ImageVAEConfig

    torch.manual_seed(0)
    m = ImageVAE(ImageVAEConfig((1, 16, 16), latent_dim=2))
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    out = m(x, torch.Generator().manual_seed(0))
    assert out.recon.shape == x.shape and out.mean.shape == (8, 2) and out.z.shape == (8, 2)
    assert float(out.recon.detach().abs().max()) <= 1.0
    loss = m.loss(x, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 16, 16\)"):
        m.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"expected latents \(B, 2\)"):
        m.decode(torch.zeros(2, 3))


def test_image_vae_learns_digits_and_its_latents_fill_the_prior():
    """300 steps: reconstructions beat the mean image, and the KL keeps the latents near N(0, I) (std < 2)."""
    from minidiff.data import load_digits
    from minidiff.models.vae import ImageVAE, ImageVAEConfig
    from minidiff.train import TrainConfig, train

    x, _ = load_digits(16)
    torch.manual_seed(0)
    r = train(ImageVAE(ImageVAEConfig(kl_weight=1e-2)), lambda m, x, y, g: m.loss(x, g), (x, None),
              TrainConfig(steps=300, batch_size=128, lr=2e-3, ema_decay=0.9), progress=False)
    with torch.no_grad():
        mean, _ = r.ema.encode(x)
        mse = float(torch.nn.functional.mse_loss(r.ema.decode(mean), x))
    baseline = float(((x - x.mean(0)) ** 2).mean())
    assert mse < 0.7 * baseline, (mse, baseline)
    assert float(mean.std(0).max()) < 2.0
