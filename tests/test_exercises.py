"""The exercise system: checks bite, student notebooks are in sync and fail exactly at their check cells."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import torch

from minidiff import ddim, ddpm, flow
from minidiff import exercises as ex
from minidiff.ddpm import forward_step, q_sample
from minidiff.exercises import lesson01 as _lesson01
from minidiff.exercises import lesson02 as _lesson02
from minidiff.exercises import lesson03 as _lesson03
from minidiff.exercises import lesson04 as _lesson04
from minidiff.exercises import lesson05 as _lesson05
from minidiff.exercises import lesson06 as _lesson06
from minidiff.exercises import lesson08 as _lesson08
from minidiff.exercises import lesson09 as _lesson09
from minidiff.models.text import clip_loss
from minidiff.models.vae import causal_pad
from minidiff.schedules import cosine_beta_schedule, linear_beta_schedule, make_schedule

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ex.lesson_notebooks(str(ROOT / "notebooks"))


def stub(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------------------ each check: pass, wrong, stub


def ref_closed_form(betas):
    abar = torch.cumprod(1 - betas, 0)
    return abar.sqrt(), (1 - abar).sqrt()


def ref_my_q_sample(x0, noise, t, a, b):
    return q_sample(make_schedule("linear", 1000), x0, noise, t)


CASES = {
    "forward_step": (
        ex.check_forward_step,
        forward_step,
        [
            (lambda x, b, e: (1 - b) ** 0.5 * x + b * e, "sqrt(beta_t), not beta_t"),
            (lambda x, b, e: (1 - b) * x + b**0.5 * e, "sqrt(1 - beta_t)"),
            (lambda x, b, e: x + b**0.5 * e, "x_t = sqrt"),
        ],
    ),
    "linear_schedule": (
        ex.check_linear_schedule,
        linear_beta_schedule,
        [
            (lambda T, b0, b1: torch.linspace(b0, b1, T + 1)[1:], "first beta must be beta_start"),
            (lambda T, b0, b1: torch.linspace(b0, b1, T + 1), "returned shape"),
            (lambda T, b0, b1: torch.linspace(0, b1, T), "first beta must be beta_start"),
            (lambda T, b0, b1: torch.logspace(torch.log10(torch.tensor(b0)), torch.log10(torch.tensor(b1)), T),
             "evenly spaced"),
            (lambda T, b0, b1: [b0] * T, "torch.Tensor"),
        ],
    ),
    "closed_form": (
        ex.check_closed_form_coefficients,
        ref_closed_form,
        [
            (lambda b: ((1 - b).sqrt(), b.sqrt()), "cumulative product"),
            (lambda b: (torch.cumprod(1 - b, 0), (1 - torch.cumprod(1 - b, 0)).sqrt()), "square root"),
            (lambda b: (torch.cumprod(1 - b, 0).sqrt(), 1 - torch.cumprod(1 - b, 0)), "noise coefficient"),
            (lambda b: torch.cumprod(1 - b, 0).sqrt(), "pair"),
        ],
    ),
    "q_sample": (
        ex.check_q_sample,
        ref_my_q_sample,
        [
            (lambda x0, e, t, a, b: a[t[0]] * x0 + b[t[0]] * e, "each sample uses its own t"),
            (lambda x0, e, t, a, b: a[t].reshape(-1, 1, 1, 1) * x0 + b[t].reshape(-1, 1, 1, 1), "its own t"),
            (lambda x0, e, t, a, b: (a[t] * x0.flatten(1).T).T, "returned shape"),
            (lambda x0, e, t, a, b: 1 / 0, "ZeroDivisionError"),
        ],
    ),
}


# ------------------------------------------------------------------------------------------------ lesson 02 checks


def ref_posterior(s, x0, xt, t):
    return ddpm.q_posterior_mean_variance(s, x0, xt, t)


def ref_loss(model, s, x0, noise, t):
    return torch.mean((model(q_sample(s, x0, noise, t), t) - noise) ** 2)


def ref_ancestral(s, eps, xt, t, z):
    return ddpm.p_sample(s, eps, xt, t, z, clip_denoised=False)[0]


def ref_x0(s, xt, t, eps):
    return ddpm.predict_x0_from_eps(s, xt, t, eps)


def _at(v, t):
    return v[t].reshape(-1, 1, 1, 1).double()


def _posterior_variant(kind: str):
    """A posterior with one of the mistakes the check must name: the neighbouring index sqrt(abar_t) for
    sqrt(abar_(t-1)), alphas_cumprod[t - 1] (wraps around at t = 0), or coefficients without their square roots."""

    def fn(s, x0, xt, t):
        def at(v, idx=t):
            return v.double()[idx].reshape(-1, 1, 1, 1)

        ab, b, a = at(s.alphas_cumprod), at(s.betas), at(s.alphas)
        abp = at(s.alphas_cumprod, t - 1) if kind == "wrap" else at(s.alphas_cumprod_prev)
        c1 = (ab.sqrt() if kind == "adjacent" else abp if kind == "squared" else abp.sqrt()) * b / (1 - ab)
        c2 = (a if kind == "squared" else a.sqrt()) * (1 - abp) / (1 - ab)
        return c1 * x0 + c2 * xt, b * (1 - abp) / (1 - ab)

    return fn


_loop02 = _lesson02._reference_loop  # the build exercise of lesson 02 and its one-mistake variants


CASES.update({
    "sample_loop": (
        ex.check_sample_loop,
        _loop02,
        [
            (lambda m, s, x, y, n: _loop02(m, s, x, y, n, order=range(s.T)), "down to t = 0"),
            (lambda m, s, x, y, n: _loop02(m, s, x, y, n, noise_at_0=True), "no noise on the last step"),
            (lambda m, s, x, y, n: _loop02(m, s, x, y, n, labels=False), "pass the labels"),
            (lambda m, s, x, y, n: _loop02(m, s, x, y, n, shift=-1), "step t uses noises"),
            (lambda m, s, x, y, n: _loop02(m, s, x, y, n, clip=True), "differs from the ancestral chain"),
        ],
    ),
    "posterior": (
        ex.check_posterior,
        ref_posterior,
        [
            (lambda s, x0, xt, t: (ref_posterior(s, x0, xt, t)[0], _at(s.betas, t)), "that is beta_t"),
            (lambda s, x0, xt, t: (xt, ref_posterior(s, x0, xt, t)[1]), "coefficient of the mean is wrong"),
            (lambda s, x0, xt, t: (ref_posterior(s, x0, xt, t)[0], s.posterior_variance[:3]), "must broadcast"),
            (lambda s, x0, xt, t: ref_posterior(s, x0, xt, t)[0], "pair"),
            (_posterior_variant("adjacent"), "sqrt(abar_t), the neighbouring index"),
            (_posterior_variant("wrap"), "wraps around to the last entry"),
            (_posterior_variant("squared"), "take the square root"),
        ],
    ),
    "ddpm_loss": (
        ex.check_ddpm_loss,
        ref_loss,
        [
            (lambda m, s, x0, e, t: torch.mean((m(q_sample(s, x0, e, t), t) - x0) ** 2), "not x0"),
            (lambda m, s, x0, e, t: torch.mean((m(x0, t) - e) ** 2), "feed the network the noisy x_t"),
            (lambda m, s, x0, e, t: (m(q_sample(s, x0, e, t), t) - e) ** 2, "scalar"),
        ],
    ),
    "ancestral_step": (
        ex.check_ancestral_step,
        ref_ancestral,
        [
            (lambda s, e, x, t, z: ref_ancestral(s, e, x, max(t, 1), z) if t > 0 else
             ref_ancestral(s, e, x, 0, z) + 0.1 * z, "no noise is added on the last step"),
            (lambda s, e, x, t, z: ref_ancestral(s, e, x, t, z) - s.posterior_variance[t].sqrt() * z
             + s.betas[t].sqrt() * z, "sqrt(beta_t)"),
            (lambda s, e, x, t, z: ref_ancestral(s, e, x, 0, z) * 0 + (x - s.betas[t] / (1 - s.alphas_cumprod[t]).sqrt()
             * e) / s.alphas[t].sqrt(), "add sigma_t"),
            (lambda s, e, x, t, z: x - e, "mean = "),
        ],
    ),
    "predict_x0": (
        ex.check_predict_x0,
        ref_x0,
        [
            (lambda s, x, t, e: x - e, "solve x_t"),
            (lambda s, x, t, e: (x - (1 - s.alphas_cumprod[t[0]]).sqrt() * e) / s.alphas_cumprod[t[0]].sqrt(),
             r"t = \[30, 400, 999\]"),
        ],
    ),
})


# ------------------------------------------------------------------------------------------------ lesson 03 checks


def ref_ddim(s, e, x, t, tp, eta, z):
    return ddim.ddim_step(s, e, x, t, tp, eta, z, clip_denoised=False)[0]


CASES.update({
    "ddim_step": (
        ex.check_ddim_step,
        ref_ddim,
        [
            (lambda s, e, x, t, tp, eta, z: ref_ddim(s, e, x, t, tp, 0.0, z), "sigma = eta"),
            (lambda s, e, x, t, tp, eta, z: ref_ddim(s, e, x, t, tp, eta, z) if tp >= 0 else x, "t_prev = -1"),
            (lambda s, e, x, t, tp, eta, z: ddim.ddim_step(s, e, x, t, tp, eta, z, clip_denoised=True)[0],
             "x_prev = sqrt"),
            (lambda s, e, x, t, tp, eta, z: x - e, "x_prev = sqrt"),
        ],
    ),
    "clipped_eps": (
        ex.check_clipped_eps,
        lambda s, x, t, x0: ddpm.predict_eps_from_x0(s, x, torch.full((x.shape[0],), t), x0),
        [
            (lambda s, x, t, x0: (x - s.alphas[t].sqrt() * x0) / (1 - s.alphas[t]).sqrt(), "not alphas"),
            (lambda s, x, t, x0: (x - s.alphas_cumprod[t].sqrt() * x0) / s.alphas_cumprod[t].sqrt(), "add up to x_t"),
            (lambda s, x, t, x0: x - x0, "add up to x_t"),
        ],
    ),
    "ddim_timesteps": (
        ex.check_ddim_timesteps,
        ddim.ddim_timesteps,
        [
            (lambda T, n: ddim.ddim_timesteps(T, n)[::-1], "reverse it"),
            (lambda T, n: list(range(T - 1, -1, -(T // n))), "multiples of T // steps"),
            (lambda T, n: ddim.ddim_timesteps(T, n)[:-1], "exactly"),
            (lambda T, n: [i * round(T / n) for i in range(n)][::-1], "T // steps = 166 (floor)"),
        ],
    ),
    "invert": (
        ex.check_invert,
        lambda m, s, x, y, n: ddim.ddim_invert(m, s, x, steps=n, cond={"y": y}, progress=False),
        [
            (lambda m, s, x, y, n: _lesson03._reference_inversion(m, s, x, y, n, eps_at_target=True),
             "the point you are at"),
            (lambda m, s, x, y, n: _lesson03._reference_inversion(m, s, x, y, n, order_down=True), "upwards"),
            (lambda m, s, x, y, n: ddim.ddim_sample(m, s, x.shape, steps=n, cond={"y": y}, noise=x, progress=False),
             "differs from DDIM inversion"),
        ],
    ),
    "slerp": (
        ex.check_slerp,
        ddim.slerp,
        [
            (lambda a, b, al: (1 - al) * a + al * b, "linear interpolation"),
            (lambda a, b, al: ddim.slerp(a.reshape(1, -1), b.reshape(1, -1), al).reshape(a.shape), "per sample"),
        ],
    ),
})


# ------------------------------------------------------------------------------------------------ lesson 04 checks


def ref_vloss(m, x0, e, t):
    return torch.mean((m(flow.interpolate(x0, e, t), t) - (e - x0)) ** 2)


def ref_euler(m, x1, steps):
    return flow.euler_sample(m, tuple(x1.shape), steps=steps, noise=x1, progress=False)


def _euler_forward(m, x1, steps):
    x = x1
    for i in range(steps):
        t_cur, t_next = 1 - i / steps, 1 - (i + 1) / steps
        x = x + (t_cur - t_next) * m(x, torch.full((x.shape[0],), t_cur))
    return x


CASES.update({
    "velocity_loss": (
        ex.check_velocity_loss,
        ref_vloss,
        [
            (lambda m, x0, e, t: torch.mean((m(flow.interpolate(x0, e, t), t) - (x0 - e)) ** 2), "noise - x0"),
            (lambda m, x0, e, t: torch.mean((m(flow.interpolate(x0, e, t), t * 1000) - (e - x0)) ** 2), "t itself"),
            (lambda m, x0, e, t: torch.mean((m(flow.interpolate(e, x0, t), t) - (e - x0)) ** 2), "pure noise"),
        ],
    ),
    "euler": (
        ex.check_euler_sampler,
        ref_euler,
        [
            (_euler_forward, "time runs from 1 down to 0"),
            (lambda m, x1, steps: x1, "linspace"),
        ],
    ),
    "estimates_from_velocity": (
        ex.check_estimates_from_velocity,
        flow.estimates_from_velocity,
        [
            (lambda xt, v, t: (xt - v, xt + v), "x0_hat does not recover"),
            (lambda xt, v, t: (flow.estimates_from_velocity(xt, v, t)[0], xt), "eps_hat does not recover"),
            (lambda xt, v, t: xt, "pair"),
        ],
    ),
})


# lesson 05
from minidiff.guidance import cfg_combine as ref_cfg  # noqa: E402
from minidiff.models import layers as _layers  # noqa: E402


def _patchify_wrong_inner_order(x, p):  # tokens hold the right pixels, flattened (channel, row, column)
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), -1)


def _patchify_naive(x, p):  # a plain reshape: the right shape, the wrong tokens
    b, c, h, w = x.shape
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def _unpatchify_transposed(tok, p, h, w, c):  # rows and columns of the grid swapped
    b = tok.shape[0]
    return tok.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 2, 4, 1, 3).reshape(b, c, h, w)


CASES.update({
    "patchify": (
        ex.check_patchify,
        _layers.patchify,
        [
            (_patchify_wrong_inner_order, "right pixels but in another order"),
            (_patchify_naive, "which patch"),
            (lambda x, p: x.flatten(2).transpose(1, 2), "returned shape"),
        ],
    ),
    "unpatchify": (
        ex.check_unpatchify,
        _layers.unpatchify,
        [
            (_unpatchify_transposed, "misplaced"),
            (lambda tok, p, h, w, c: tok.reshape(tok.shape[0], c, h, w) * 0, "undo patchify"),
        ],
    ),
    "attention": (
        ex.check_attention,
        lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, -1) @ v,
        [
            (lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1), -1) @ v, "by sqrt(d), the head size"),
            (lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1], -1) @ v, "not by d"),
            (lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, -2) @ v, "over the keys"),
            (lambda q, k, v: torch.softmax(k @ q.transpose(-2, -1) / q.shape[-1] ** 0.5, -1) @ v, "queries as rows"),
            (lambda q, k, v: v, "normalised over the keys"),
        ],
    ),
    "modulate": (
        ex.check_modulate,
        _layers.modulate,
        [
            (lambda x, sh, sc: x * sc[:, None] + sh[:, None], "identity when scale = 0"),
            (lambda x, sh, sc: x * (1 + sc[:, :, None].mean(1, keepdim=True)) + sh[:, None], "no token axis"),
        ],
    ),
    "dit_block": (
        ex.check_dit_block,
        lambda b, x, c: b(x, c),
        [
            (lambda b, x, c: _lesson05._dit_block_variant(b, x, c, gates=False), "multiply each branch by its gate"),
            (lambda b, x, c: _lesson05._dit_block_variant(b, x, c, swap=True), "shift comes first"),
            (lambda b, x, c: _lesson05._dit_block_variant(b, x, c, parallel=True), "sequential"),
            (lambda b, x, c: _lesson05._dit_block_variant(b, x, c, norm=False), "normalise before modulating"),
            (lambda b, x, c: x + b.attn(b.norm1(x)), "differs from the DiT block"),
        ],
    ),
    "multi_head_attention": (
        ex.check_multi_head_attention,
        lambda a, x: _lesson05._mha_variant(a, x),
        [
            (lambda a, x: _lesson05._mha_variant(a, x, proj=False), "output projection"),
            (lambda a, x: _lesson05._mha_variant(a, x, layout="hkd"), "(3, heads, head size)"),
            (lambda a, x: _lesson05._mha_variant(a, x, merge="reshape"), "bring the token axis"),
            (lambda a, x: _lesson05._mha_variant(a, x, scale="width"), "not by the width D"),
            (lambda a, x: a.proj(x), "cut into heads"),
        ],
    ),
    "cross_attention": (
        ex.check_cross_attention,
        lambda a, x, c: a(x, c),
        [
            (lambda a, x, c: _lesson05._cross_variant(a, x, c, keys_from="x"), "that is self-attention"),
            (lambda a, x, c: _lesson05._cross_variant(a, x, c, proj=False), "output projection"),
            (lambda a, x, c: _lesson05._cross_variant(a, x, c, kv_order="vk"), "keys first"),
            (lambda a, x, c: _lesson05._cross_variant(a, x, c, scale="width"), "not by the width D"),
            (lambda a, x, c: a.proj(a.q_linear(x)), "one row of weights per image token"),
        ],
    ),
    "time_shift": (
        ex.check_time_shift,
        lambda g, t: flow.time_shift(g, t),
        [
            (lambda g, t: t / (g - (g - 1) * t), "inverse shift"),
            (lambda g, t: g * t / (1 + g * t), "has to stay 1"),
            (lambda g, t: g * t, "not a stretch"),
            (lambda g, t: 1 - g * (1 - t) / (1 + (g - 1) * (1 - t)), "inverse shift"),  # the same function
            (lambda g, t: g * t / (1 + (g - 1)), "came back unchanged"),
            (lambda g, t: t ** (1 / g), "keeps 0 and 1"),
        ],
    ),
    "cfg_combine": (
        ex.check_cfg_combine,
        ref_cfg,
        [
            (lambda c, u, s: c + s * (u - c), "swapped"),
            (lambda c, u, s: s * c, "only stretches"),
            (lambda c, u, s: u + s * c, "scale = 1 must give cond"),
        ],
    ),
})


from minidiff.models import text as _text  # noqa: E402
from minidiff.models import vae as _vae  # noqa: E402


def _ref_prompt_to_ids(prompt, vocab, max_length):
    ids = [vocab["[BOS]"]] + [vocab[w] for w in prompt.lower().split()] + [vocab["[EOS]"]]
    return ids + [vocab["[PAD]"]] * (max_length - len(ids))


def _nce_one_way(t, v, s):
    t, v = torch.nn.functional.normalize(t, dim=-1), torch.nn.functional.normalize(v, dim=-1)
    return torch.nn.functional.cross_entropy(s * t @ v.T, torch.arange(len(t)))


CASES.update({
    "reparameterize": (
        ex.check_reparameterize,
        _vae.reparameterize,
        [
            (lambda m, lv, e: m + lv.exp() * e, "standard deviation exp(logvar / 2)"),
            (lambda m, lv, e: m + lv * e, "logvar is a log"),
            (lambda m, lv, e: m + (0.5 * lv).exp(), "forgot the noise"),
        ],
    ),
    "kl_divergence": (
        ex.check_kl_divergence,
        _vae.kl_divergence,
        [
            (lambda m, lv: m**2 + lv.exp() - 1 - lv, "factor 0.5"),
            (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 + lv), "sign of the logvar term"),
            (lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(), "returned shape"),
        ],
    ),
    "causal_pad": (
        ex.check_causal_pad,
        _vae.causal_pad,
        [
            (lambda x, p: torch.cat([x, x[:, :, -1:].expand(-1, -1, p, -1, -1)], 2), "future side"),
            (lambda x, p: torch.cat([torch.zeros_like(x[:, :, :p]), x], 2), "repeat frame 0"),
            (lambda x, p: torch.nn.functional.pad(x, (0, 0, 0, 0, p // 2, p - p // 2), mode="replicate"),
             "along the time axis .dim 2."),
        ],
    ),
    "prompt_to_ids": (
        ex.check_prompt_to_ids,
        _ref_prompt_to_ids,
        [
            (lambda p, v, n: ([v[w] for w in p.lower().split()] + [v["[EOS]"]] + [v["[PAD]"]] * n)[:n],
             "start with the"),
            (lambda p, v, n: [v["[BOS]"]] + [v[w] for w in p.lower().split()] + [v["[EOS]"]], "pad with"),
            (lambda p, v, n: _ref_prompt_to_ids(p.lower(), v, n)[::-1], "one id per word"),
        ],
    ),
    "pool_at_eos": (
        ex.check_pool_at_eos,
        _text.pool_at_eos,
        [
            (lambda h, ids, e: h[:, -1], "last position is padding"),
            (lambda h, ids, e: h.mean(1), "mean pooling"),
            (lambda h, ids, e: h[:, 0], "BOS"),
        ],
    ),
    "clip_loss": (
        ex.check_clip_loss,
        _text.clip_loss,
        [
            (lambda t, v, s: (torch.nn.functional.cross_entropy(s * t @ v.T, torch.arange(len(t)))
                              + torch.nn.functional.cross_entropy(s * v @ t.T, torch.arange(len(t)))) / 2,
             "normalise"),
            (_nce_one_way, "symmetric"),
            (lambda t, v, s: _text.clip_loss(t, v, 1.0), "logit_scale"),
            (lambda t, v, s: _text.clip_loss(t, v, s).reshape(1, 1).expand(2, 2), "scalar tensor"),
        ],
    ),
})


# lesson 08
from minidiff.guidance import cfg_combine as _cfg  # noqa: E402
from minidiff.models import mmdit as _mmdit  # noqa: E402


def _ref_residual(x, f, mod, norm):
    return x + mod.gate * f(_layers.modulate(norm(x), mod.shift, mod.scale))


def _ref_joint(tq, tk, tv, iq, ik, iv, pe):
    n = tq.shape[2]
    a = _layers.attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2), pe=pe)
    return a[:, :n], a[:, n:]


def _separate_attention(tq, tk, tv, iq, ik, iv, pe):
    n = tq.shape[2]
    return (_layers.attention(tq, tk, tv, pe=pe[:, :, :n]), _layers.attention(iq, ik, iv, pe=pe[:, :, n:]))


def _ref_guided_step(model, x, t_cur, t_next, cond, null, scale):
    t = torch.full((x.shape[0],), t_cur)
    return x + (t_next - t_cur) * _cfg(model(x, t, **cond), model(x, t, **null), scale)


def _ref_double_block(block, img, txt, vec, pe):
    return block(img, txt, vec, pe)


def _double_block_shared_txt_weights(block, img, txt, vec, pe):
    """A plausible mistake: the text stream reuses the video stream's weights."""
    mod1, mod2 = block.img_mod(vec)
    x = torch.cat([txt, img], 1)
    q, k, v = block.img_attn.split_heads(_layers.modulate(block.img_norm1(x), mod1.shift, mod1.scale))
    x = x + mod1.gate * block.img_attn.proj(_layers.attention(q, k, v, pe=pe))
    x = x + mod2.gate * block.img_mlp(_layers.modulate(block.img_norm2(x), mod2.shift, mod2.scale))
    return x[:, txt.shape[1]:], x[:, :txt.shape[1]]


def _rope_wrong_direction(q, k, pe):
    pe = pe.clone()
    pe[..., 0, 1], pe[..., 1, 0] = pe[..., 1, 0].clone(), pe[..., 0, 1].clone()
    return _layers.apply_rope(q, k, pe)


CASES.update({
    "pack": (
        ex.check_pack,
        _layers.patchify_video,
        [
            (lambda x, p: x.reshape(x.shape[0], x.shape[1], x.shape[2], x.shape[3] // p, p, x.shape[4] // p, p)
             .permute(0, 2, 3, 5, 4, 6, 1).reshape(x.shape[0], -1, p * p * x.shape[1]), "DiT's"),
            (lambda x, p: x.reshape(x.shape[0], x.shape[1], x.shape[2], x.shape[3] // p, p, x.shape[4] // p, p)
             .permute(0, 2, 3, 5, 1, 6, 4).reshape(x.shape[0], -1, p * p * x.shape[1]), "wrong order"),
            (lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]), "time is not patched"),
        ],
    ),
    "apply_rope": (
        ex.check_apply_rope,
        _layers.apply_rope,
        [
            (_rope_wrong_direction, "wrong way"),
            (lambda q, k, pe: (_layers.apply_rope(q, k, pe)[0], k), "keys as well"),
            (lambda q, k, pe: (q * 1.5, k), "length"),
            (lambda q, k, pe: (q.flip(-1), k.flip(-1)), "adjacent dimensions"),
        ],
    ),
    "modulated_residual": (
        ex.check_modulated_residual,
        _ref_residual,
        [
            (lambda x, f, m, n: x + f(_layers.modulate(n(x), m.shift, m.scale)), "multiply the branch by mod.gate"),
            (lambda x, f, m, n: x + m.gate * f(n(x) * m.scale + m.shift), "not scale, so that scale = 0"),
            (lambda x, f, m, n: x + m.gate * f(n(_layers.modulate(x, m.shift, m.scale))), "normalise first"),
            (lambda x, f, m, n: m.gate * f(_layers.modulate(n(x), m.shift, m.scale)), "keep the residual"),
        ],
    ),
    "joint_attention": (
        ex.check_joint_attention,
        _ref_joint,
        [
            (lambda tq, tk, tv, iq, ik, iv, pe: _ref_joint(iq, ik, iv, tq, tk, tv, pe)[::-1], "text first"),
            (_separate_attention, "two separate attentions"),
            (lambda tq, tk, tv, iq, ik, iv, pe: (tv.transpose(1, 2).flatten(2), iv.transpose(1, 2).flatten(2)),
             "are the text part"),
        ],
    ),
    "guided_euler_step": (
        ex.check_guided_euler_step,
        _ref_guided_step,
        [
            (lambda m, x, tc, tn, c, n, s: _ref_guided_step(m, x, tn, tc, c, n, s) * 0
             + x + (tc - tn) * _cfg(m(x, torch.full((x.shape[0],), tc), **c),
                                    m(x, torch.full((x.shape[0],), tc), **n), s), "time runs from 1 to 0"),
            (lambda m, x, tc, tn, c, n, s: _ref_guided_step(m, x, tc, tn, n, c, s), "swapped"),
            (lambda m, x, tc, tn, c, n, s: x + (tn - tc) * s * m(x, torch.full((x.shape[0],), tc), **c),
             "extrapolates"),
            (lambda m, x, tc, tn, c, n, s: _ref_guided_step(m, x, tn, tn - (tc - tn), c, n, s) * 0
             + x + (tn - tc) * _cfg(m(x, torch.full((x.shape[0],), tn), **c),
                                    m(x, torch.full((x.shape[0],), tn), **n), s), "made at the step.s start"),
        ],
    ),
    "i2v_condition": (
        ex.check_i2v_condition,
        _mmdit.i2v_condition,
        [
            (lambda k, f: _mmdit.i2v_condition(k, f)[:, list(range(1, k.shape[1] + 1)) + [0]], "mask first"),
            (lambda k, f: torch.cat([_mmdit.i2v_condition(k, f)[:, :1], k[:, :, :1].expand(-1, -1, f, -1, -1)], 1)
             if k.shape[2] == 1 else _mmdit.i2v_condition(k, f) * 2, "hold zeros"),
            (lambda k, f: torch.cat([torch.ones_like(_mmdit.i2v_condition(k, f)[:, :1]),
                                     _mmdit.i2v_condition(k, f)[:, 1:]], 1), "mask must say which frames"),
            (lambda k, f: torch.cat([_mmdit.i2v_condition(k, f)[:, :1], _mmdit.i2v_condition(k.flip(2), f)[:, 1:]], 1)
             if k.shape[2] > 1 else _mmdit.i2v_condition(k, f) - 1, "reference channels hold the known frames"),
        ],
    ),
    "double_stream_block": (
        ex.check_double_stream_block,
        _ref_double_block,
        [
            (lambda b, i, t, v, pe: _ref_double_block(b, i, t, v, pe)[::-1], "in that order"),
            (_double_block_shared_txt_weights, "its own weights"),
            (lambda b, i, t, v, pe: (_ref_double_block(b, i, t, v, pe)[0], t), "check the text stream"),
        ],
    ),
    "single_stream_block": (
        ex.check_single_stream_block,
        lambda b, x, v, pe: b(x, v, pe),
        [
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, order="mlp_first"), "q, k, v first"),
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, gate=False), "gated before"),
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, residual=False), "keep the residual"),
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, qk_norm=False), "RMS-normalised"),
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, act=False), "activation"),
            (lambda b, x, v, pe: _lesson08._single_block_variant(b, x, v, pe, rope=False), "through RoPE"),
            (lambda b, x, v, pe: x + b.linear2(torch.cat([x, x, x, x, x], -1)), "parallel block"),
        ],
    ),
    "prepare_img_ids": (
        ex.check_prepare_img_ids,
        _mmdit.prepare_img_ids,
        [
            (lambda *a: _lesson08._img_ids_variant(*a, units="pixels"), "in tokens"),
            (lambda *a: _lesson08._img_ids_variant(*a, order="rcf"), "frame first"),
            (lambda *a: _lesson08._img_ids_variant(*a, raster="column"), "row by row"),
            (lambda *a: _lesson08._img_ids_variant(*a, start=1), "count from 0"),
            (lambda *a: _mmdit.prepare_img_ids(*a).long(), "return floats"),
            (lambda *a: _mmdit.prepare_img_ids(*a) * 0, "one .frame, row, column. triple"),
        ],
    ),
})
assert _mmdit  # the module is used by the checks under test


# ----------------------------------------------------------------- the build exercises of lessons 01, 04, 06 and 07


def _heun(m, x1, steps):
    return flow.heun_sample(m, tuple(x1.shape), steps=steps, noise=x1, progress=False)


def _causal_conv3d(x, w, b, stride):
    kt, kh, kw = w.shape[2:]
    return torch.nn.functional.conv3d(causal_pad(x, kt - 1), w, b, stride=stride, padding=(0, kh // 2, kw // 2))


def _clip_step(kind: str = "right"):
    import math

    def step(clip, opt, latents, prompts):
        scale = {"unclipped": clip.logit_scale.exp(), "log": clip.logit_scale}.get(
            kind, clip.logit_scale.clamp(max=math.log(100)).exp())
        loss = clip_loss(clip.embed_text(prompts), clip.embed_video(latents), scale)
        if kind not in ("no zero_grad", "stale only"):
            opt.zero_grad()
        if kind not in ("no backward", "stale only"):
            loss.backward()
        if kind == "zero_grad after backward":
            opt.zero_grad()
        if kind != "no step":
            opt.step()
        return clip.loss(latents, prompts).item() if kind == "loss after" else loss.item()

    return step


CASES.update({
    "cosine_schedule": (
        ex.check_cosine_schedule,
        cosine_beta_schedule,
        [
            (lambda T, s, m: _lesson01._cosine_variant(T, s, m, clip=False), "clip the betas at max_beta"),
            (lambda T, s, m: _lesson01._cosine_variant(T, s, m, squared=False), "squared cosine"),
            (lambda T, s, m: _lesson01._cosine_variant(T, s, m, offset=False), "offset s goes inside"),
            (lambda T, s, m: _lesson01._cosine_variant(T, s, m, ratio=False), "ratio of neighbours"),
            (lambda T, s, m: _lesson01._cosine_variant(T, s, m, points=T), "values of alphas_cumprod, at u = 0"),
            (lambda T, s, m: cosine_beta_schedule(T, s, m).flip(0), "must grow with t"),
            (lambda T, s, m: cosine_beta_schedule(T, 0.008, 0.999), "s=0.1, max_beta=0.5"),
        ],
    ),
    "heun_sampler": (
        ex.check_heun_sampler,
        _heun,
        [
            (lambda m, x, n: _lesson04._heun_variant(m, x, n, correct=False), "that is Euler's method"),
            (lambda m, x, n: _lesson04._heun_variant(m, x, n, last=True), "keep the plain Euler step"),
            (lambda m, x, n: _lesson04._heun_variant(m, x, n, t2="cur"), "model(x_pred, t_next), not t_cur"),
            (lambda m, x, n: _lesson04._heun_variant(m, x, n, mix="v2"), "average the two slopes"),
            (lambda m, x, n: _lesson04._heun_variant(m, x, n, start="pred"), "not from x_pred"),
            (lambda m, x, n: _heun(m, x, 2 * n), "model calls"),
        ],
    ),
    "causal_conv3d": (
        ex.check_causal_conv3d,
        _causal_conv3d,
        [
            (lambda x, w, b, st: _lesson06._conv3d_variant(x, w, b, st, time="both"), "padded time on both sides"),
            (lambda x, w, b, st: _lesson06._conv3d_variant(x, w, b, st, time="last"), "not after the last frame"),
            (lambda x, w, b, st: _lesson06._conv3d_variant(x, w, b, st, time="zeros"), "repeats frame 0"),
            (lambda x, w, b, st: _lesson06._conv3d_variant(x, w, b, st, use_bias=False), "add the bias"),
            (lambda x, w, b, st: torch.nn.functional.conv3d(x, w, b, stride=st, padding=(0, 1, 1)),
             "returned shape"),
            (lambda x, w, b, st: _causal_conv3d(x, w, b, (1, 1, 1)), "with the stride"),
        ],
    ),
    "clip_training_step": (
        ex.check_clip_training_step,
        _clip_step(),
        [
            (_clip_step("unclipped"), "clip the temperature"),
            (_clip_step("log"), "use its exp()"),
            (_clip_step("no zero_grad"), "left over from an earlier step"),
            (_clip_step("no step"), "did not change"),
            (_clip_step("zero_grad after backward"), "did not change"),
            (_clip_step("no backward"), "after loss.backward()"),
            (_clip_step("stale only"), "only the stale gradients"),
            (_clip_step("loss after"), "the loss you back-propagated"),
        ],
    ),
})


def _sdedit_ref(m, x, e, s, n, y):
    return _lesson09._ref_sdedit(m, x, e, s, n, y)


def _sdedit_variant(kind):
    def fn(m, x, e, s, n, y):
        start = {"fresh": e, "clean": x, "swapped": s * x + (1 - s) * e}.get(kind, (1 - s) * x + s * e)
        top = 1.0 if kind in ("fresh", "full grid") else s
        return flow.integrate(m, tuple(x.shape), noise=start, timesteps=torch.linspace(top, 0, n + 1),
                              cond={"y": y}, progress=False)
    return fn


def _target_variant(kind):
    def fn(teacher, x, t, t_mid, t_next, y):
        tb = torch.full((x.shape[0],), t)
        v1 = teacher(x, tb, y=y)
        x_mid = x + (t_mid - t) * v1
        v2 = teacher(x_mid, tb if kind == "stale" else torch.full_like(tb, t_mid), y=y)
        x_next = x_mid + (t_next - t_mid) * v2
        return {"one": v1, "point": x_next, "half": (x_next - x) / (t_mid - t),
                "sign": (x - x_next) / (t_next - t)}.get(kind, (x_next - x) / (t_next - t))
    return fn


def _put_back(x, known, mask, eps, t):
    return mask * ((1 - t) * known + t * eps) + (1 - mask) * x


CASES.update({
    "sdedit": (
        ex.check_sdedit,
        _sdedit_ref,
        [
            (_sdedit_variant("fresh"), "a fresh sample"),
            (_sdedit_variant("clean"), "expects x_t, not the clean image"),
            (_sdedit_variant("full grid"), "runs from t = strength down to 0"),
            (_sdedit_variant("swapped"), "share is (1 - strength)"),
        ],
    ),
    "put_back": (
        ex.check_put_back,
        _put_back,
        [
            (lambda x, k, m, e, t: _put_back(x, k, 1 - m, e, t), "the mask is 1 where the image is known"),
            (lambda x, k, m, e, t: m * k + (1 - m) * x, "not clean"),
            (lambda x, k, m, e, t: m * (t * k + (1 - t) * e) + (1 - m) * x, "share is (1 - t)"),
            (lambda x, k, m, e, t: (1 - t) * k + t * e, "keep the model's own x"),
        ],
    ),
    "distillation_target": (
        ex.check_distillation_target,
        _target_variant("right"),
        [
            (_target_variant("one"), "TWO steps"),
            (_target_variant("point"), "return a velocity"),
            (_target_variant("half"), "twice the teacher's"),
            (_target_variant("sign"), "mind the sign"),
            (_target_variant("stale"), "at t_mid"),
        ],
    ),
    "lora_forward": (
        ex.check_lora_forward,
        lambda x, w, b, a, bb, s: x @ w.T + b + s * (x @ a.T) @ bb.T,
        [
            (lambda x, w, b, a, bb, s: x @ w.T + b + (x @ a.T) @ bb.T, "alpha / r"),
            (lambda x, w, b, a, bb, s: s * (x @ w.T + b + (x @ a.T) @ bb.T), "not the frozen layer's output"),
            (lambda x, w, b, a, bb, s: x @ w.T + s * (x @ a.T) @ bb.T, "keeps its bias"),
            (lambda x, w, b, a, bb, s: x @ w.T + b, "add the low-rank update"),
        ],
    ),
})


@pytest.mark.parametrize("name", CASES)
def test_check_passes_on_reference(name, capsys):
    check, ref, _ = CASES[name]
    check(ref)
    out = capsys.readouterr().out
    assert out.startswith("✅") and out.count("\n") == 1


@pytest.mark.parametrize("name", CASES)
def test_check_fails_on_wrong_answers_with_a_hint(name):
    check, _, wrongs = CASES[name]
    for fn, hint in wrongs:
        with pytest.raises(ex.CheckFailed, match=hint.replace("(", r"\(").replace(")", r"\)")):
            check(fn)


@pytest.mark.parametrize("name", CASES)
def test_check_fails_on_the_stub(name):
    check, _, _ = CASES[name]
    with pytest.raises(ex.CheckFailed, match="still the stub"):
        check(stub)
    assert issubclass(ex.CheckFailed, AssertionError)


# ------------------------------------------------------------------------------------ the student-notebook builder


def test_strip_solutions_keeps_indent_and_rejects_bad_markers():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert ex.strip_solutions(src) == "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    with pytest.raises(ValueError, match="without an END"):
        ex.strip_solutions("### BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="without a BEGIN"):
        ex.strip_solutions("x = 1\n### END SOLUTION\n")


def test_there_are_lessons():
    assert LESSONS, "no lesson notebooks found"


@pytest.mark.parametrize("lesson", LESSONS, ids=os.path.basename)
def test_student_version_is_in_sync(lesson):
    target = Path(lesson).parent / "exercises" / Path(lesson).name
    assert target.exists(), f"missing {target}: run python -m minidiff.exercises build"
    assert target.read_text(encoding="utf-8") == ex.student_text(lesson), (
        f"{target} is out of date: run python -m minidiff.exercises build"
    )
    code = [c.source for c in nbformat.read(str(target), as_version=4).cells if c.cell_type == "code"]
    assert not any(ex.BEGIN in c for c in code), "solution markers left in the student version"
    assert sum("raise NotImplementedError()" in c for c in code) >= 3


def _execute_with_one_retry(nb, cwd: Path):
    """Run a notebook, allowing errors, with `ex.execute_notebook` (which works around lost replies after widget
    cells). In fast mode no cell takes more than ~70 s, so a cell silent for 300 s has stalled: it is retried once
    in a fresh kernel with a warning, and a second stall fails the test."""
    import copy
    import warnings

    from nbclient.exceptions import CellTimeoutError

    for attempt in (1, 2):
        run = copy.deepcopy(nb)
        try:
            return ex.execute_notebook(run, str(cwd), timeout=300, allow_errors=True)
        except CellTimeoutError as e:
            if attempt == 2:
                raise
            warnings.warn(f"notebook execution stalled ({str(e)[:200]}); retrying once in a fresh kernel",
                          stacklevel=1)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("lesson", LESSONS, ids=os.path.basename)
def test_student_version_fails_exactly_at_its_check_cells(lesson):
    lesson_nb = nbformat.read(lesson, as_version=4)
    n_solutions = sum(c.source.count(ex.BEGIN) for c in lesson_nb.cells if c.cell_type == "code")
    nb = ex.build_student_notebook(lesson_nb)
    nb = _execute_with_one_retry(nb, Path(lesson).parent / "exercises")
    checks, failures = 0, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        tags = cell.metadata.get("tags", [])
        if "check" in tags or "project" in tags:  # a project's check: graded the same way, its score not compared
            checks += 1
            if "check" in tags:
                assert "NBVAL_CHECK_OUTPUT" in cell.source  # compared in lessons, not in submissions (nbval_grading)
            if not errors or errors[0].ename != "CheckFailed":
                failures.append(f"check cell {i} did not fail with CheckFailed: {[e.ename for e in errors]}")
            elif "still the stub" not in errors[0].evalue:
                failures.append(f"check cell {i} failed for another reason: {errors[0].evalue}")
        elif errors:
            failures.append(f"cell {i} (not a check) raised {errors[0].ename}: {errors[0].evalue}")
    assert not failures, "\n".join(failures)
    assert checks >= 3 and checks >= n_solutions, f"{checks} check cells for {n_solutions} solution regions"



def _junk_answers(ref):
    """Plausible junk a learner's function returns: nothing, numpy, nested lists, a wrong shape, a torch error."""
    import numpy as np

    def numpy_version(*a):
        out = ref(*a)
        if isinstance(out, torch.Tensor):
            return out.detach().numpy()
        if isinstance(out, (tuple, list)):
            return type(out)(o.detach().numpy() if isinstance(o, torch.Tensor) else o for o in out)
        return np.asarray(out)

    def nested_lists(*a):
        out = ref(*a)
        return out.tolist() if isinstance(out, torch.Tensor) else [[1, 2], [3]]

    def wrong_shape(*a):
        out = ref(*a)
        if isinstance(out, torch.Tensor):
            return out.reshape(-1)[:-1] if out.numel() > 1 else torch.zeros(3)
        if isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out):
            return type(out)(o[:1] if isinstance(o, torch.Tensor) and o.ndim else o for o in out)
        if isinstance(out, (tuple, list)):
            return out[:-1]  # one id or timestep short
        return torch.zeros(2, 2)

    def torch_not_implemented(*a):
        raise NotImplementedError("Could not run 'aten::foo' with arguments from the 'Meta' backend")

    return {"None": lambda *a: None, "numpy": numpy_version, "nested lists": nested_lists,
            "wrong shape": wrong_shape, "a string": lambda *a: "x0", "torch's NotImplementedError":
            torch_not_implemented}


@pytest.mark.parametrize("name", CASES)
def test_check_rejects_junk_with_check_failed_never_a_raw_error(name):
    check, ref, _ = CASES[name]
    for kind, fn in _junk_answers(ref).items():
        try:
            check(fn)
        except ex.CheckFailed as e:
            assert str(e), f"{name}, {kind}: an empty message"
            if kind == "torch's NotImplementedError":
                assert "still the stub" not in str(e) and "NotImplementedError" in str(e), str(e)
            continue
        except Exception as e:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"check_{name} given {kind} raised {type(e).__name__}: {e}") from None
        if kind not in ("nested lists", "numpy"):  # a list or array of the right numbers may be accepted
            raise AssertionError(f"check_{name} accepted {kind}")


def test_a_solved_exercise_that_calls_an_unsolved_one_names_the_unsolved_one():
    def causal_pad(x, time_pad):  # the learner's earlier exercise, still the stub
        raise NotImplementedError()

    def causal_conv3d(x, w, b, stride):
        return torch.nn.functional.conv3d(causal_pad(x, w.shape[2] - 1), w, b, stride=stride)

    with pytest.raises(ex.CheckFailed, match="causal_conv3d calls `causal_pad`, which is still the stub"):
        ex.check_causal_conv3d(causal_conv3d)
