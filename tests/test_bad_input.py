"""Bad and hostile input across the public surface: every case must raise the exception named here, with a message
that names the argument (and usually what it got and what is allowed) — never a bare traceback from inside torch,
never a silent wrong result, never NaN, never a hang, never lost work.

CASES is a table (kind, id, thunk, exception, words the message must contain); the kinds follow issue 14:
timesteps/silent (wrong results that used to pass), numbers (NaN, inf, out of range), shapes/types (obscure
tracebacks), models, text, cards/checkpoints, training, exercises, paths. Separate tests cover the recipe CLI (the
shipped files stay untouched), temporary files after interrupted saves, and errors shown inside a widget.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minidiff import checkpoint, ddim, ddpm, flow, guidance, pretrained, schedules
from minidiff.checks import check_int, check_number
from minidiff.config import Config
from minidiff.guidance import drop_labels
from minidiff.models.dit import DiT, DiTConfig
from minidiff.models.layers import patchify, patchify_video
from minidiff.models.mmdit import MMDiT, MMDiTConfig
from minidiff.models.unet import UNet, UNetConfig
from minidiff.sampling import check_cond
from minidiff.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
S = schedules.make_schedule("cosine", 1000)
X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
LONG_T = torch.full((4,), 3, dtype=torch.long)


@cache
def unet() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(image_size=8, channels=(8, 16), num_classes=10, groups=4, time_factor=1000.0)).eval()


@cache
def dit() -> DiT:
    torch.manual_seed(0)
    return DiT(DiTConfig(image_size=8, in_channels=1, patch_size=2, hidden_size=32, depth=1, num_heads=2,
                         num_classes=10, time_factor=1000.0)).eval()


@cache
def mmdit() -> MMDiT:
    torch.manual_seed(0)
    return MMDiT(MMDiTConfig(in_channels=16, patch_size=2, vec_in_dim=8, context_in_dim=8, hidden_size=32,
                             num_heads=2, depth=1, depth_single_blocks=1, axes_dim=(4, 6, 6))).eval()


@cache
def text_encoder():
    from minidiff.data import caption_words
    from minidiff.models.text import TextEncoder, TextEncoderConfig

    return TextEncoder(TextEncoderConfig(words=caption_words(), hidden_size=16, num_layers=1, num_heads=2))


@cache
def _judge():
    from minidiff.models.classifier import ClassifierConfig, DigitClassifier

    return DigitClassifier(ClassifierConfig())


def _eval():
    from minidiff import eval as ev

    return ev


@cache
def _vae():
    from minidiff.models.vae import VAEConfig, VideoVAE

    return VideoVAE(VAEConfig(channels=(8, 8, 8)))


def _generate(*args):
    """`minidiff generate` in-process; raises SystemExit(code) carrying the code and what it printed to stderr."""
    import contextlib
    import io

    from minidiff.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["generate", "a red 3 moving left", *args])
    raise SystemExit(f"{code} {err.getvalue()}")


class NaNModel(torch.nn.Module):
    """A denoiser whose weights diverged: every prediction is NaN."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(float("nan")))

    def forward(self, x, t, y=None):
        return x * self.w


def _euler(**kw):
    return flow.euler_sample(unet(), (4, 1, 8, 8), steps=kw.pop("steps", 2), progress=False, **kw)


def _ddim(**kw):
    return ddim.ddim_sample(unet(), S, (4, 1, 8, 8), steps=kw.pop("steps", 2), progress=False, **kw)


def _train(tmp=None, data=None, checkpoint_path=None, **cfg):
    cfg = {"steps": 2, "batch_size": 2, **cfg}
    data = data if data is not None else (X, None)
    return train(unet(), lambda m, x, y, g: flow.flow_loss(m, x, generator=g), data, TrainConfig(**cfg),
                 checkpoint_path=checkpoint_path, progress=False)


def _card(tmp_name: str, text: str):
    import tempfile

    d = Path(tempfile.mkdtemp())
    (d / f"{tmp_name}.json").write_text(text)
    return lambda: pretrained.load_pretrained(tmp_name, d)


def _half(ref):
    def fn(*args):
        out = ref(*args)
        if isinstance(out, torch.Tensor) and out.dtype.is_floating_point:
            return out.half()
        if isinstance(out, (tuple, list)):
            return type(out)(o.half() if isinstance(o, torch.Tensor) and o.dtype.is_floating_point else o for o in out)
        return out
    return fn


NAN, INF = float("nan"), float("inf")
CASES = [
    # ---- silent wrong results (used to return something) -> now refused
    ("silent", "p_sample float t", lambda: ddpm.p_sample(S, X, X, 2.7), ValueError, ["t", "integer", "2.7"]),
    ("silent", "predict_x0 t=-1", lambda: ddpm.predict_x0_from_eps(S, X, torch.full((4,), -1), X), ValueError,
     ["timestep -1", "0..999"]),
    ("silent", "predict_x0 float t", lambda: ddpm.predict_x0_from_eps(S, X, torch.tensor([999.9, 500.5, 0.7, 1.0]),
                                                                      X), ValueError, ["t", "dtype torch.float32"]),
    ("silent", "posterior x0 batch 1 over x_t batch 4",
     lambda: ddpm.q_posterior_mean_variance(S, X[:1], X, LONG_T), ValueError, ["x0", "(4, 1, 8, 8)", "(1, 1, 8, 8)"]),
    ("silent", "predict_eps x0 batch 1", lambda: ddpm.predict_eps_from_x0(S, X, LONG_T, X[:1]), ValueError,
     ["x0", "shape"]),
    ("silent", "predict_x0 eps batch 1", lambda: ddpm.predict_x0_from_eps(S, X, LONG_T, X[:1]), ValueError,
     ["eps", "shape"]),
    ("silent", "q_sample long images", lambda: ddpm.q_sample(S, (X * 127).long(), X, 3), ValueError,
     ["x0", "dtype torch.int64", "float"]),
    ("silent", "ddim_step float t", lambda: ddim.ddim_step(S, X, X, 2.7, 1), ValueError, ["t ", "integer", "2.7"]),
    ("silent", "ddim_step t_prev=-2", lambda: ddim.ddim_step(S, X, X, 5, -2), ValueError, ["t_prev", "-2"]),
    ("silent", "ddim timesteps floats", lambda: _ddim(timesteps=[900.5, 500.2, 0.1]), ValueError,
     ["timesteps[0]", "integer", "900.5"]),
    ("silent", "flow t=-0.5", lambda: flow.interpolate(X, X, torch.full((4,), -0.5)), ValueError,
     ["t must lie in [0, 1]", "-0.5"]),
    ("silent", "flow t=2", lambda: flow.interpolate(X, X, torch.full((4,), 2.0)), ValueError, ["[0, 1]", "2"]),
    ("silent", "flow t as DDPM steps", lambda: flow.interpolate(X, X, torch.full((4,), 500)), ValueError,
     ["t", "float", "torch.int64"]),
    ("silent", "estimates_from_velocity t=3", lambda: flow.estimates_from_velocity(X, X, torch.full((4,), 3.0)),
     ValueError, ["[0, 1]"]),
    ("silent", "estimates_from_velocity v batch 1", lambda: flow.estimates_from_velocity(X, X[:1], torch.rand(4)),
     ValueError, ["v", "shape"]),
    ("silent", "cfg_combine broadcast", lambda: guidance.cfg_combine(X, X[:1], 2.0), ValueError, ["same shape"]),
    ("silent", "cond for an unknown keyword", lambda: _ddim(cond={"label": LONG_T}), ValueError,
     ["'label'", "UNet", "model(x, t, y)"]),
    # ---- numbers: NaN, inf, out of range (used to give NaN samples or train forever)
    ("numbers", "euler shift inf", lambda: _euler(shift=INF), ValueError, ["shift", "finite", "inf"]),
    ("numbers", "euler shift 0", lambda: _euler(shift=0.0), ValueError, ["shift", "[0.001, 1000]", "0"]),
    ("numbers", "time_shift nan", lambda: flow.time_shift(NAN, torch.rand(3)), ValueError, ["shift", "nan"]),
    ("numbers", "flow_loss shift -1", lambda: flow.flow_loss(unet(), X, shift=-1.0), ValueError, ["shift", "-1"]),
    ("numbers", "guidance scale nan", lambda: guidance.ClassifierFreeGuidance(unet(), NAN, {"y": 10}), ValueError,
     ["guidance scale", "nan"]),
    ("numbers", "guidance scale inf", lambda: guidance.ClassifierFreeGuidance(unet(), INF, {"y": 10}), ValueError,
     ["guidance scale", "inf"]),
    ("numbers", "guidance scale -1", lambda: guidance.ClassifierFreeGuidance(unet(), -1.0, {"y": 10}), ValueError,
     ["guidance scale", "[0, inf]", "-1"]),
    ("numbers", "guidance scale string", lambda: guidance.ClassifierFreeGuidance(unet(), "7", {"y": 10}), ValueError,
     ["guidance scale", "number", "str"]),
    ("numbers", "cfg_combine scale nan", lambda: guidance.cfg_combine(X, X, NAN), ValueError, ["guidance scale"]),
    ("numbers", "ddim eta nan", lambda: _ddim(eta=NAN), ValueError, ["eta", "nan"]),
    ("numbers", "ddim eta 2", lambda: _ddim(eta=2.0), ValueError, ["eta", "[0, 1]", "2"]),
    ("numbers", "slerp zero vector", lambda: ddim.slerp(torch.zeros(2, 3), torch.randn(2, 3), 0.5), ValueError,
     ["z0", "all zeros"]),
    ("numbers", "slerp alpha nan", lambda: ddim.slerp(torch.randn(2, 3), torch.randn(2, 3), NAN), ValueError,
     ["lam", "nan"]),
    ("numbers", "slerp NaN noise", lambda: ddim.slerp(torch.full((2, 3), NAN), torch.randn(2, 3), 0.5), ValueError,
     ["z0", "NaN"]),
    ("numbers", "sampler noise with NaN", lambda: _ddim(noise=torch.full((4, 1, 8, 8), NAN)), ValueError,
     ["noise", "NaN"]),
    ("numbers", "NaN model -> sample", lambda: flow.euler_sample(NaNModel(), (2, 1, 8, 8), steps=2, progress=False),
     FloatingPointError, ["Euler sampling", "NaN", "weights"]),
    ("numbers", "drop_labels p nan", lambda: drop_labels(LONG_T, 10, NAN), ValueError, ["drop probability", "nan"]),
    ("numbers", "max_minutes nan", lambda: _train(max_minutes=NAN), ValueError, ["max_minutes", "nan"]),
    ("numbers", "max_minutes 0", lambda: _train(max_minutes=0), ValueError, ["max_minutes", "(0, inf]"]),
    ("numbers", "max_minutes -1", lambda: _train(max_minutes=-1), ValueError, ["max_minutes", "-1"]),
    ("numbers", "lr nan", lambda: _train(lr=NAN), ValueError, ["TrainConfig.lr", "nan"]),
    ("numbers", "ema_decay 1.5", lambda: _train(ema_decay=1.5), ValueError, ["ema_decay", "[0, 1]", "1.5"]),
    ("numbers", "adam beta 1", lambda: _train(adam_betas=(0.9, 1.0)), ValueError, ["adam_betas[1]", "[0, 1)"]),
    ("numbers", "betas with nan", lambda: schedules.NoiseSchedule.from_betas(torch.tensor([0.1, NAN])), ValueError,
     ["betas[1]", "nan"]),
    ("numbers", "T = 0", lambda: schedules.make_schedule("linear", 0), ValueError, ["T", "positive integer", "0"]),
    # ---- shapes and types (used to be tracebacks from inside torch or Python)
    ("shapes", "q_sample t = T", lambda: ddpm.q_sample(S, X, X, 1000), ValueError, ["timestep 1000", "0..999"]),
    ("shapes", "q_sample t list", lambda: ddpm.q_sample(S, X, X, [1, 2, 3, 4]), ValueError, ["t", "list"]),
    ("shapes", "sampler batch 0", lambda: flow.euler_sample(unet(), (0, 1, 8, 8), progress=False), ValueError,
     ["shape", "(0, 1, 8, 8)", "at least 1"]),
    ("shapes", "sampler shape not a tuple", lambda: flow.euler_sample(unet(), 4, progress=False), ValueError,
     ["shape", "tuple of integers", "4"]),
    ("shapes", "ddpm sampler shape of floats", lambda: ddpm.p_sample_loop(unet(), S, (2.0, 1, 8, 8), progress=False),
     ValueError, ["shape", "tuple of integers"]),
    ("shapes", "trajectory=-1", lambda: _euler(trajectory=-1), ValueError, ["trajectory", "-1"]),
    ("shapes", "cond a list", lambda: _ddim(cond={"y": [1, 2, 3, 4]}), ValueError, ["cond['y']", "tensor", "list"]),
    ("shapes", "cond wrong batch", lambda: _ddim(cond={"y": LONG_T[:2]}), ValueError, ["cond['y']", "batch size 4"]),
    ("shapes", "cond not a dict", lambda: _ddim(cond=LONG_T), ValueError, ["cond", "dict", "Tensor"]),
    ("shapes", "steps 2.5", lambda: _ddim(steps=2.5), ValueError, ["steps", "2.5"]),
    ("shapes", "euler steps 0", lambda: _euler(steps=0), ValueError, ["steps", "positive integer", "0"]),
    ("shapes", "noise wrong shape", lambda: _euler(noise=torch.randn(4, 1, 16, 16)), ValueError,
     ["noise", "(4, 1, 16, 16)", "(4, 1, 8, 8)"]),
    ("shapes", "patchify 2.0", lambda: patchify(X, 2.0), ValueError, ["patch_size", "positive integer", "2.0"]),
    ("shapes", "patchify 0", lambda: patchify(X, 0), ValueError, ["patch_size", "0"]),
    ("shapes", "patchify 3", lambda: patchify(X, 3), ValueError, ["patch size 3", "8x8", "[1, 2, 4, 8]"]),
    ("shapes", "patchify_video on images", lambda: patchify_video(X, 2), ValueError, ["(B, C, T, H, W)"]),
    # ---- models
    ("models", "UNet long images", lambda: unet()(X.long(), torch.rand(4)), ValueError, ["x", "torch.int64"]),
    ("models", "UNet t a list", lambda: unet()(X, [0.1] * 4), ValueError, ["t", "tensor", "list"]),
    ("models", "UNet t bool", lambda: unet()(X, torch.ones(4, dtype=torch.bool)), ValueError, ["t", "torch.bool"]),
    ("models", "UNet t 0-d", lambda: unet()(X, torch.tensor(0.5)), ValueError, ["t", "shape (4,)"]),
    ("models", "UNet batch 0", lambda: unet()(X[:0], torch.rand(0)), ValueError, ["x", "batch size 0"]),
    ("models", "UNet float labels", lambda: unet()(X, torch.rand(4), torch.rand(4)), ValueError,
     ["labels", "integer", "float32"]),
    ("models", "UNet label 11", lambda: unet()(X, torch.rand(4), torch.full((4,), 11)), ValueError,
     ["labels", "0..9", "11"]),
    ("models", "UNet channels last", lambda: unet()(X.permute(0, 2, 3, 1), torch.rand(4)), ValueError,
     ["UNet", "(B, 1, 8, 8)", "(4, 8, 8, 1)"]),
    ("models", "DiT labels list", lambda: dit()(X, torch.rand(4), [1, 2, 3, 4]), ValueError, ["labels", "list"]),
    ("models", "DiT t list", lambda: dit()(X, [0.5] * 4), ValueError, ["t", "list"]),
    ("models", "MMDiT txt long", lambda: mmdit()(torch.randn(1, 4, 1, 4, 4), torch.rand(1),
                                                  torch.ones(1, 3, 8, dtype=torch.long), torch.randn(1, 8)),
     ValueError, ["txt", "torch.int64"]),
    ("models", "MMDiT images not videos", lambda: mmdit()(torch.randn(1, 4, 4, 4), torch.rand(1), torch.randn(1, 3, 8),
                                                          torch.randn(1, 8)), ValueError, ["(B, 4, T, H, W)"]),
    ("models", "MMDiT t a float", lambda: mmdit()(torch.randn(1, 4, 1, 4, 4), 0.5, torch.randn(1, 3, 8),
                                                  torch.randn(1, 8)), ValueError, ["t", "float"]),
    ("models", "unconditional DiT given labels",
     lambda: DiT(DiTConfig(image_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=2, num_classes=None))(
         X, torch.rand(4), LONG_T), ValueError, ["unconditional", "labels"]),
    ("models", "DiT patch size that does not divide", lambda: DiT(DiTConfig(image_size=8, patch_size=3)), ValueError,
     ["patch size 3", "image_size 8"]),
    ("models", "config field of the wrong type", lambda: UNetConfig.from_dict({"image_size": "16"}), TypeError,
     ["UNetConfig.image_size", "integer", "'16'"]),
    ("models", "config list of strings", lambda: UNetConfig.from_dict({"channels": ["a"]}), TypeError,
     ["UNetConfig.channels", "list of ints"]),
    ("models", "config unknown field", lambda: UNetConfig.from_dict({"widths": [8]}), TypeError,
     ["no field(s) ['widths']"]),
    # ---- text
    ("text", "prompts None", lambda: text_encoder()(None), ValueError, ["prompts", "None"]),
    ("text", "prompts []", lambda: text_encoder()([]), ValueError, ["prompts", "non-empty"]),
    ("text", "prompt not a string", lambda: text_encoder()(["a red 3", 7]), ValueError, ["prompts[1]", "int"]),
    ("text", "unknown word", lambda: text_encoder()(["a purple 3 moving left"]), ValueError,
     ["unknown word", "'purple'", "knows only"]),
    ("text", "10,000-character prompt is cut", lambda: text_encoder()(["zebra " * 1700]), ValueError,
     ["unknown word", "characters)"]),
    ("text", "too many words", lambda: text_encoder()(["a red 3 moving left a red 3 moving"]), ValueError,
     ["words", "at most 6"]),
    # ---- cards and checkpoints
    ("cards", "card not JSON", _card("broken", "{not json"), ValueError, ["broken.json", "not valid JSON"]),
    ("cards", "card not an object", _card("alist", "[1, 2]"), ValueError, ["alist.json", "JSON object", "list"]),
    ("cards", "card kind wrongly typed", _card("kind7", '{"kind": 7, "config": {}}'), ValueError,
     ["kind7.json", "'kind'", "7"]),
    ("cards", "card config wrongly typed", _card("cfglist", '{"kind": "unet", "config": [1]}'), ValueError,
     ["cfglist.json", "'config'"]),
    ("cards", "card config field wrongly typed",
     _card("badfield", '{"kind": "unet", "config": {"image_size": "sixteen"}}'), ValueError,
     ["badfield.json", "image_size", "sixteen"]),
    ("cards", "card unknown kind", _card("kindx", '{"kind": "gan", "config": {}}'), ValueError,
     ["unknown model kind", "'gan'"]),
    ("cards", "card without config", _card("nocfg", '{"kind": "unet"}'), ValueError, ["nocfg.json", "no 'config'"]),
    ("cards", "missing model", lambda: pretrained.load_pretrained("no-such-model"), FileNotFoundError,
     ["no-such-model", "available", "--install"]),
    ("cards", "missing checkpoint file", lambda: checkpoint.load("/nonexistent/x.safetensors"), FileNotFoundError,
     ["/nonexistent/x.safetensors"]),
    # ---- paths
    ("paths", "name with ..", lambda: pretrained.load_pretrained("../pretrained/ddpm-digits"), ValueError,
     ["plain name", "../pretrained/ddpm-digits", "root="]),
    ("paths", "absolute path as a name", lambda: pretrained.load_card("/etc/passwd"), ValueError, ["plain name"]),
    ("paths", "empty name", lambda: pretrained.load_pretrained(""), ValueError, ["plain name"]),
    ("paths", "name not a string", lambda: pretrained.load_card(None), ValueError, ["plain name", "None"]),
    ("paths", "save under a path name", lambda: pretrained.save_pretrained("a/b", unet(), "unet", {}), ValueError,
     ["plain name", "'a/b'"]),
    # ---- training
    ("training", "empty dataset", lambda: _train(data=(X[:0], None)), ValueError, ["dataset is empty"]),
    ("training", "data not a pair", lambda: _train(data=X), ValueError, ["data", "pair", "Tensor"]),
    ("training", "data with NaN", lambda: _train(data=(X * NAN, None)), ValueError, ["data x", "NaN"]),
    ("training", "integer data", lambda: _train(data=((X * 127).long(), None)), ValueError, ["data x", "int64"]),
    ("training", "labels count", lambda: _train(data=(X, LONG_T[:3])), ValueError, ["4 inputs", "(3,)"]),
    ("training", "checkpoint_every 0", lambda: _train(checkpoint_every=0), ValueError,
     ["TrainConfig.checkpoint_every", "0"]),
    ("training", "log_every 0", lambda: _train(log_every=0), ValueError, ["TrainConfig.log_every", "0"]),
    ("training", "steps 1.5", lambda: _train(steps=1.5), ValueError, ["TrainConfig.steps", "integer", "1.5"]),
    ("training", "unknown lr schedule", lambda: _train(lr_schedule="linear"), ValueError,
     ["lr_schedule", "'linear'"]),
    ("training", "checkpoint_path a folder", lambda: _train(checkpoint_path=str(ROOT / "tests")), ValueError,
     ["checkpoint_path", "is a folder"]),
    ("training", "checkpoint_path unwritable", lambda: _train(checkpoint_path="/proc/no/such/run.safetensors"),
     PermissionError, ["checkpoint_path", "/proc/no/such/run.safetensors", "cannot write"]),
    ("training", "loss_fn not callable", lambda: train(unet(), None, (X, None), TrainConfig(steps=1), progress=False),
     ValueError, ["loss_fn", "NoneType"]),
    # ---- evaluation and data
    ("silent", "judge given integer images", lambda: _judge()(X.long().repeat(1, 1, 2, 2)), ValueError,
     ["images", "torch.int64"]),
    ("silent", "judge given NaN images", lambda: _judge()(torch.full((2, 1, 16, 16), NAN)), ValueError,
     ["images", "NaN"]),
    ("silent", "caption of digit 11", lambda: __import__("minidiff.data").data.caption(11, 0, 0), ValueError,
     ["digit", "0..9", "11"]),
    ("silent", "caption_index of floats", lambda: __import__("minidiff.data").data.caption_index(
        torch.rand(2), LONG_T[:2], LONG_T[:2]), ValueError, ["digits", "integer", "float32"]),
    ("shapes", "class_accuracy label count", lambda: _eval().class_accuracy(_judge(), torch.zeros(5, 1, 16, 16),
                                                                            LONG_T[:3]), ValueError,
     ["5 images but 3 labels"]),
    ("shapes", "frechet of one sample", lambda: _eval().frechet_distance(torch.zeros(1, 4).numpy(),
                                                                         torch.zeros(3, 4).numpy()), ValueError,
     ["f1", "N >= 2"]),
    ("shapes", "video VAE given integer videos", lambda: _vae().encode(torch.zeros(1, 3, 9, 32, 32,
                                                                                   dtype=torch.long)),
     ValueError, ["videos", "torch.int64"]),
    # ---- the generate command line (checked before the model loads)
    ("numbers", "generate --cfg nan", lambda: _generate("--cfg", "nan"), SystemExit, ["2", "--cfg", "nan"]),
    ("numbers", "generate --fps 0", lambda: _generate("--fps", "0"), SystemExit, ["2", "--fps", "0"]),
    ("numbers", "generate --steps 0", lambda: _generate("--steps", "0"), SystemExit, ["2", "--steps", "0"]),
    # ---- helpers at the boundary
    ("numbers", "check_int bool", lambda: check_int("seed", True), ValueError, ["seed", "integer", "bool"]),
    ("numbers", "check_number string", lambda: check_number("lr", "1e-3"), ValueError, ["lr", "number", "str"]),
]


@pytest.mark.parametrize("kind, case, thunk, exc, words", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_bad_input_gets_a_clear_error(kind, case, thunk, exc, words):
    with pytest.raises(exc) as info:
        thunk()
    message = str(info.value)
    for w in words:
        assert w in message, f"{case}: {w!r} not in the message {message!r}"
    assert len(message) < 700, f"{case}: a {len(message)}-character message"


def test_there_are_many_distinct_cases_of_every_kind():
    ids = [c[1] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60
    kinds = {}
    for c in CASES:
        kinds[c[0]] = kinds.get(c[0], 0) + 1
    assert min(kinds.values()) >= 4, kinds


# ------------------------------------------------------------------------------------------ hypothesis, numbers


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=3),
                 st.none(), st.booleans()))
def test_guidance_scale_is_a_finite_number_at_least_zero_or_refused(scale):
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale >= 0
    if ok:
        assert guidance.ClassifierFreeGuidance(unet(), scale, {"y": 10}).scale == float(scale)
    else:
        with pytest.raises(ValueError, match="guidance scale"):
            guidance.ClassifierFreeGuidance(unet(), scale, {"y": 10})


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(-3, 1003), st.floats(-2, 1002)))
def test_ddpm_timesteps_are_integers_in_range_or_refused(t):
    if isinstance(t, int) and 0 <= t < 1000:
        assert ddpm.q_sample(S, X, X, t).shape == X.shape
    else:
        with pytest.raises(ValueError, match="t must|timestep"):
            ddpm.q_sample(S, X, X, t)


@settings(max_examples=40, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_time_shift_never_returns_nan(alpha):
    if math.isfinite(alpha) and 1e-3 <= alpha <= 1e3:
        out = flow.time_shift(alpha, torch.linspace(0, 1, 11, dtype=torch.float64))
        assert bool(torch.isfinite(out).all()) and float(out.min()) >= 0 and float(out.max()) <= 1 + 1e-12
    else:
        with pytest.raises(ValueError, match="shift"):
            flow.time_shift(alpha, torch.rand(3))


def test_slerp_of_parallel_vectors_is_finite():
    z = torch.randn(2, 5)
    out = ddim.slerp(z, 2 * z, 0.3)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, 0.7 * z + 0.6 * z)


def test_unconditional_sampling_of_the_shipped_class_conditional_models():
    for name in ("flow-digits", "dit-digits"):
        model, _ = pretrained.load_pretrained(name)
        x = flow.euler_sample(model, (2, 1, 16, 16), steps=2, progress=False)
        assert bool(torch.isfinite(x).all())


# ------------------------------------------------------------------------------------------ checkpoints and cards


def test_nan_weights_of_the_right_shape_are_refused(tmp_path):
    model = unet()
    bad = {k: torch.full_like(v, NAN) if v.dtype.is_floating_point else v for k, v in model.state_dict().items()}
    checkpoint.save_atomic(str(tmp_path / "nanny.safetensors"), bad, {"kind": "unet"})
    (tmp_path / "nanny.json").write_text(json.dumps({"kind": "unet", "config": model.config.to_dict()}))
    with pytest.raises(ValueError, match="nanny.safetensors holds NaN"):
        pretrained.load_pretrained("nanny", tmp_path)


def test_a_resume_file_without_optimizer_state_is_refused(tmp_path):
    path = tmp_path / "run.safetensors"
    checkpoint.save_atomic(str(path), dict(unet().state_dict()), {"kind": "unet"})
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _train(checkpoint_path=str(path))


def test_temporary_files_of_killed_saves_are_removed_on_the_next_save_and_load(tmp_path):
    target = tmp_path / "ckpt.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    stale = [tmp_path / f".tmp-ckpt.safetensors-{pid}-abc{i}.safetensors" for i in range(3)]
    for p in stale:
        p.write_bytes(b"half a file")
    alive = tmp_path / f".tmp-ckpt.safetensors-{os.getppid()}-live.safetensors"  # a writer still running
    alive.write_bytes(b"in progress")
    other = tmp_path / f".tmp-other.safetensors-{pid}-x.safetensors"  # another file's: not ours to touch
    other.write_bytes(b"x")
    checkpoint.save_atomic(str(target), {"a": torch.ones(2)})
    assert not any(p.exists() for p in stale) and alive.exists() and other.exists()
    stale[0].write_bytes(b"half a file")
    checkpoint.load(str(target))
    assert not stale[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["ckpt.safetensors", alive.name, other.name])


def test_training_warns_when_the_loss_grows_by_orders_of_magnitude():
    from minidiff.train import DivergingLoss

    calls = {"n": 0}

    def exploding(model, x, y, g):
        calls["n"] += 1
        return flow.flow_loss(model, x, generator=g) * 10.0 ** calls["n"]

    with pytest.warns(DivergingLoss, match="the loss grew from"):
        train(unet(), exploding, (X, None), TrainConfig(steps=8, batch_size=2, log_every=2), progress=False)


def test_a_loss_that_crosses_zero_is_not_called_diverging():
    """A loss with a negative part (a cosine term, a log-likelihood) can go from -0.01 to +0.01 without diverging: a
    ratio to a best value at or below zero says nothing, so there is no warning."""
    import warnings

    values = iter([-0.01, -0.01, 0.01, 0.01, 0.02, 0.02])

    def crossing(model, x, y, g):
        return flow.flow_loss(model, x, generator=g) * 0 + next(values)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(unet(), crossing, (X, None), TrainConfig(steps=6, batch_size=2, log_every=2), progress=False)


def test_a_nan_loss_stops_training_with_a_clear_message():
    from minidiff.train import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match="the loss became nan at step 1; lower the learning rate"):
        train(unet(), lambda m, x, y, g: m(x, torch.rand(x.shape[0])).sum() * NAN, (X, None),
              TrainConfig(steps=3, batch_size=2), progress=False)


# ------------------------------------------------------------------------------------------ the recipe CLI


def _recipes(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "minidiff.recipes", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("minutes", ["nan", "0", "-1", "inf", "five"])
def test_recipe_cli_refuses_a_bad_time_budget(minutes):
    r = _recipes("ddpm-digits", "--minutes", minutes, timeout=60)
    assert r.returncode == 2 and "--minutes" in r.stderr and minutes in r.stderr, r.stderr


def test_recipe_cli_leaves_the_shipped_model_alone_without_install(tmp_path):
    shipped = [ROOT / "data" / "pretrained" / f"ddpm-digits{e}" for e in (".safetensors", ".json")]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in shipped]
    r = _recipes("ddpm-digits", "--minutes", "0.02", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in shipped] == before
    assert "unchanged (add --install" in r.stdout
    model, card = pretrained.load_pretrained("ddpm-digits", tmp_path)
    assert card["train_steps"] >= 1 and card["recipe"] == "ddpm-digits"


def test_recipe_install_replaces_only_complete_files(tmp_path):
    from minidiff.pretrained import install

    shipped, run = tmp_path / "shipped", tmp_path / "run"
    for d in (shipped, run):
        d.mkdir()
    pretrained.save_pretrained("m", unet(), "unet", {"recipe": "old"}, shipped)
    old = (shipped / "m.safetensors").read_bytes()
    (run / "m.json").write_text("{half")  # an incomplete run: nothing is installed
    with pytest.raises(ValueError, match="not valid JSON"):
        install("m", run, shipped)
    assert (shipped / "m.safetensors").read_bytes() == old and json.loads((shipped / "m.json").read_text())[
        "recipe"] == "old"
    pretrained.save_pretrained("m", dit(), "dit", {"recipe": "new"}, run)
    install("m", run, shipped)
    assert pretrained.load_pretrained("m", shipped)[1]["recipe"] == "new"
    assert sorted(p.name for p in shipped.iterdir()) == ["m.json", "m.safetensors"]


def test_recipe_cli_checks_the_output_folder_before_training():
    r = _recipes("ddpm-digits", "--minutes", "5", "--out", "/proc/nope", timeout=60)
    assert r.returncode == 2 and "cannot write" in r.stderr and "/proc/nope" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------ exercises


def _exercise_cases():
    from tests.test_exercises import CASES as EX

    return EX


@pytest.mark.parametrize("name", ["q_sample", "posterior", "ddim_step", "patchify", "cfg_combine", "reparameterize",
                                  "pool_at_eos", "pack", "apply_rope", "guided_euler_step", "slerp",
                                  "estimates_from_velocity"])
def test_exercise_checks_fail_cleanly_on_hostile_answers(name):
    from minidiff.exercises import CheckFailed

    check, ref, _ = _exercise_cases()[name]
    with pytest.raises(CheckFailed, match="expected a function, got NoneType"):
        check(None)
    with pytest.raises(CheckFailed):
        check(lambda *a: None)
    with pytest.raises(CheckFailed):
        check(lambda *a: ["not", "a tensor"])
    with pytest.raises(CheckFailed, match="raised TypeError"):
        check(lambda *a: 1 + "a")
    with pytest.raises(CheckFailed, match="dtype torch.float16"):  # the right numbers in half precision
        check(_half(ref))


def test_a_solution_marker_without_its_end_names_the_notebook_and_cell(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# x"), nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n"
                                                                                "    return 1\n")]
    nbformat.write(nb, str(tmp_path / "01_broken.ipynb"))
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "build", "--root", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "01_broken.ipynb, cell 1" in r.stderr and "without an END" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------ widgets


def _output_text(widget) -> str:
    out = widget.children[-1]
    return "".join(o.get("text", "") for o in out.outputs)


def test_an_error_while_drawing_a_widget_is_shown_in_its_output_area():
    import ipywidgets as W

    from minidiff.widgets import _interactive, new_figure

    slider = W.IntSlider(value=0, min=0, max=2)

    def draw():
        if slider.value == 1:
            raise FloatingPointError("the model returned NaN")
        return new_figure((2, 2))

    w = _interactive([slider], draw)
    assert "image/png" in w.children[-1].outputs[0]["data"]
    slider.value = 1
    text = _output_text(w)
    assert "FloatingPointError" in text and "NaN" in text and plt.get_fignums() == []
    slider.value = 2  # the next good setting draws again
    assert "image/png" in w.children[-1].outputs[0]["data"]
    plt.close("all")


def test_an_explorer_that_samples_when_built_refuses_a_nan_model_there():
    from minidiff.widgets import ddim_explorer

    with pytest.raises(FloatingPointError, match="NaN"):
        ddim_explorer(NaNModel(), S, torch.randn(2, 1, 8, 8), None, steps=(2,), etas=(0.0,))


def test_widget_bounds_cannot_produce_invalid_values():
    from minidiff.widgets import cfg_explorer

    with pytest.raises(ValueError, match=r"scales\[1\]"):
        cfg_explorer(unet(), torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), 10, scales=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"scales\[0\].*nan"):
        cfg_explorer(unet(), torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), 10, scales=(NAN,))


def test_config_rejects_nulls_where_none_is_not_allowed():
    @__import__("dataclasses").dataclass
    class C(Config):
        n: int = 1
        m: int | None = 2

    assert C.from_dict({"m": None}).m is None
    with pytest.raises(TypeError, match="C.n must not be null"):
        C.from_dict({"n": None})


def test_check_cond_passes_models_that_take_any_keyword():
    assert check_cond({"y": LONG_T}, 4, model=guidance.ClassifierFreeGuidance(unet(), 2.0, {"y": 10}))["y"] is not None
