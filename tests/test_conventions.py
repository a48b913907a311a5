"""The package's conventions: one sampler signature, model(x, t, **cond), shared layers, configs as JSON."""

import json

import pytest
import torch

from minidiff import ddim, ddpm, flow
from minidiff.guidance import ClassifierFreeGuidance, drop_labels
from minidiff.models.layers import LabelEmbedder, patchify_video, unpatchify_video
from minidiff.models.unet import UNet, UNetConfig
from minidiff.sampling import TrajectoryStep
from minidiff.schedules import make_schedule

SHAPE = (4, 1, 8, 8)
SCHEDULE = make_schedule("cosine", 20)


def _samplers():
    """The three samplers, called with exactly the same keyword arguments."""
    return {
        "ddpm": lambda model, **kw: ddpm.p_sample_loop(model, SCHEDULE, SHAPE, steps=SCHEDULE.T, **kw),
        "ddim": lambda model, **kw: ddim.ddim_sample(model, SCHEDULE, SHAPE, steps=5, **kw),
        "euler": lambda model, **kw: flow.euler_sample(model, SHAPE, steps=5, **kw),
        "heun": lambda model, **kw: flow.heun_sample(model, SHAPE, steps=3, **kw),
    }


def _unet() -> UNet:
    torch.manual_seed(0)
    m = UNet(UNetConfig(image_size=8, channels=(8, 16), num_classes=10)).eval()
    torch.nn.init.normal_(m.conv_out.weight, std=0.05)  # not the zero init: predictions depend on x, t and y
    return m


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler", "heun"])
@pytest.mark.parametrize("guided", [False, True])
def test_every_sampler_takes_the_same_keywords_on_a_class_conditional_model(name, guided):
    model = _unet()
    if guided:
        model = ClassifierFreeGuidance(model, 2.0, null={"y": 10})
    y = torch.tensor([0, 3, 7, 9])
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    kw = dict(cond={"y": y}, noise=noise, generator=torch.Generator().manual_seed(2), progress=False)
    x = _samplers()[name](model, **kw)
    again, traj = _samplers()[name](model, **{**kw, "generator": torch.Generator().manual_seed(2)}, trajectory=True)
    assert x.shape == SHAPE and torch.isfinite(x).all()
    assert torch.equal(x, again)
    assert all(isinstance(s, TrajectoryStep) for s in traj)
    assert torch.equal(traj[0].x, noise) and torch.equal(traj[-1].x, x)  # from the given noise to the result
    # the condition matters: other labels give other samples from the same noise
    other = _samplers()[name](model, **{**kw, "cond": {"y": (y + 1) % 10},
                                        "generator": torch.Generator().manual_seed(2)})
    assert not torch.allclose(other, x)


class TwoConditionToy(torch.nn.Module):
    """A stand-in for lesson 08's MMDiT: model(x, t, txt, y_vec) with a token sequence and a pooled vector."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))
        self.calls: list[tuple[int, int]] = []

    def forward(self, x, t, txt, y_vec):
        self.calls.append((txt.shape[0], y_vec.shape[0]))
        bias = txt.mean((1, 2)) + y_vec.mean(1)
        return self.w * x + 0.1 * (bias + 0.01 * t.float()).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "euler"])
def test_every_sampler_carries_two_conditioning_tensors_through_guidance(name):
    toy = TwoConditionToy()
    txt, y_vec = torch.randn(4, 3, 5), torch.randn(4, 6)
    null = {"txt": torch.zeros(3, 5), "y_vec": torch.zeros(1, 6)}
    kw = dict(cond={"txt": txt, "y_vec": y_vec}, generator=torch.Generator().manual_seed(0), progress=False)
    plain = _samplers()[name](toy, **kw)
    assert set(toy.calls) == {(4, 4)}
    toy.calls.clear()
    one = _samplers()[name](ClassifierFreeGuidance(toy, 1.0, null),
                            **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert torch.equal(one, plain) and set(toy.calls) == {(4, 4)}  # scale 1 = the conditional model
    toy.calls.clear()
    guided = _samplers()[name](ClassifierFreeGuidance(toy, 3.0, null),
                               **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert set(toy.calls) == {(8, 8)}  # one batched pass: conditional and null halves together
    assert not torch.allclose(guided, plain)


def test_class_conditional_unet_accepts_float_t_without_labels():
    """A flow U-Net gets float t in [0, 1]; with no labels it must use the null label (this used to raise)."""
    m = _unet()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.25, 0.75])
    out = m(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, m(x, t, torch.tensor([10, 10])))


def test_label_embedder_and_dropout_share_the_null_label():
    emb = LabelEmbedder(10, 4)
    assert emb.null_label == 10
    torch.testing.assert_close(emb(None, batch=3), emb(torch.full((3,), 10)))
    with pytest.raises(ValueError, match="batch size"):
        emb(None)
    g = torch.Generator().manual_seed(0)
    dropped = drop_labels(torch.zeros(1000, dtype=torch.long), emb.null_label, 0.3, g)
    assert set(dropped.unique().tolist()) == {0, 10} and 0.25 < float((dropped == 10).float().mean()) < 0.35
    # a tensor null: whole rows (one per sample) are replaced
    txt = torch.ones(500, 3, 2)
    out = drop_labels(txt, torch.zeros(3, 2), 0.5, torch.Generator().manual_seed(1))
    rows = out.flatten(1)
    assert bool(((rows == 0).all(1) | (rows == 1).all(1)).all())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_labels(torch.zeros(3, dtype=torch.long), 10, 1.5)


def test_patchify_video_is_open_soras_pack():
    """b c t (h ph) (w pw) -> b (t h w) (c ph pw): t slowest, then rows, columns; feature c*4 + ph*2 + pw."""
    b, c, t, h, w = 2, 3, 2, 4, 6
    x = torch.arange(b * c * t * h * w, dtype=torch.float32).reshape(b, c, t, h, w)
    tok = patchify_video(x, 2)
    assert tok.shape == (b, t * (h // 2) * (w // 2), c * 4)
    for bi, ti, hi, wi, ci, ph, pw in [(0, 0, 0, 0, 0, 0, 0), (1, 1, 1, 2, 2, 1, 0), (0, 1, 0, 1, 1, 0, 1)]:
        token = ti * (h // 2) * (w // 2) + hi * (w // 2) + wi
        assert tok[bi, token, ci * 4 + ph * 2 + pw] == x[bi, ci, ti, 2 * hi + ph, 2 * wi + pw]
    assert torch.equal(unpatchify_video(tok, t, h, w, 2), x)
    with pytest.raises(ValueError, match="does not divide"):
        patchify_video(torch.zeros(1, 4, 3, 5, 4), 2)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        patchify_video(torch.zeros(1, 4, 4, 4), 2)


def test_every_config_round_trips_through_json():
    from minidiff.models.classifier import ClassifierConfig
    from minidiff.models.dit import DiTConfig
    from minidiff.models.mlp import VelocityMLPConfig
    from minidiff.models.mmdit import MMDiTConfig
    from minidiff.models.text import TextEncoderConfig, TinyCLIPConfig
    from minidiff.models.vae import ImageVAEConfig, VAEConfig

    configs = [UNetConfig(channels=(8, 16)), DiTConfig(), VAEConfig(), ImageVAEConfig(), VelocityMLPConfig(),
               ClassifierConfig(), MMDiTConfig(axes_dim=(8, 12, 12)),
               TinyCLIPConfig(text=TextEncoderConfig(words=["a", "b"]))]
    for cfg in configs:
        back = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
        assert back == cfg, type(cfg).__name__
    with pytest.raises(TypeError, match="no field"):
        DiTConfig.from_dict({"hidden": 3})


def test_euler_sample_can_start_part_way_on_the_tail_of_its_grid():
    """timesteps = the tail of euler_timesteps starts the sampler from a partly noised x (benchmarks' digit-loss)."""
    from minidiff import flow

    def model(x, t):
        return torch.tanh(x) * t.reshape(-1, 1, 1, 1)

    grid = flow.euler_timesteps(10, 1.5)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    full = flow.euler_sample(model, x.shape, steps=10, shift=1.5, noise=x, progress=False)
    assert torch.equal(flow.euler_sample(model, x.shape, noise=x, timesteps=grid, progress=False), full)
    by_hand = x.clone()
    for i in range(4, 10):
        t_cur, t_next = float(grid[i]), float(grid[i + 1])
        by_hand = by_hand + (t_next - t_cur) * model(by_hand, torch.full((3,), t_cur))
    tail = flow.euler_sample(model, x.shape, noise=x, timesteps=grid[4:], progress=False)
    torch.testing.assert_close(tail, by_hand)
    for bad in ([0.5], [0.2, 0.6], [1.5, 0.0]):
        with pytest.raises(ValueError, match="decreasing grid of at least 2 points in"):
            flow.euler_sample(model, x.shape, noise=x, timesteps=torch.tensor(bad), progress=False)
