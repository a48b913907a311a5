"""Every recipe's settings: the model config, the TrainConfig and the data of each shipped checkpoint (and of
lesson 06's small image VAEs), the `--preset gpu` variants, and what every recipe returns (`RecipeRun`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..models.dit import DiTConfig
from ..models.mmdit import MMDiTConfig
from ..models.text import TextEncoderConfig, TinyCLIPConfig
from ..models.unet import UNetConfig
from ..models.vae import VAEConfig
from ..train import TrainConfig, TrainResult
from ..utils import bf16_is_fast

DDPM_DIGITS = {
    "unet": UNetConfig(image_size=16, in_channels=1, channels=(48, 96, 96), num_classes=10),
    "schedule": "cosine",
    "T": 1000,
    "train": TrainConfig(steps=100_000, batch_size=128, lr=1e-3, ema_decay=0.995, grad_clip=1.0, max_minutes=5.0,
                         seed=0, bf16=None, log_every=25),
    "label_dropout": 0.1,
}


FLOW_DIGITS = {
    "unet": UNetConfig(image_size=16, in_channels=1, channels=(48, 96, 96), num_classes=10, time_factor=1000.0),
    "train": DDPM_DIGITS["train"],
    "label_dropout": 0.1,
    "logit_normal": True,
}


DIT_DIGITS = {
    "dit": DiTConfig(image_size=16, in_channels=1, patch_size=2, hidden_size=128, depth=6, num_heads=4,
                     num_classes=10, time_factor=1000.0),
    "train": TrainConfig(steps=100_000, batch_size=16, lr=1e-3, ema_decay=0.995, grad_clip=1.0, max_minutes=5.0,
                         seed=0, bf16=False, log_every=25),
    "label_dropout": 0.1,
    "logit_normal": True,
}


# `--preset gpu`: for one GPU (untested on one here: we have none; see the README). DiT-S/2 of the DiT paper's
# Table 1 (hidden 384, depth 12, 6 heads, patch 2), 16x the batch, bf16 where the GPU has it.
DIT_DIGITS_GPU = {
    **DIT_DIGITS,  # what differs from the default recipe:
    "dit": replace(DIT_DIGITS["dit"], hidden_size=384, depth=12, num_heads=6),
    "train": replace(DIT_DIGITS["train"], steps=200_000, batch_size=256, lr=3e-4, warmup_steps=500, ema_decay=0.999,
                     max_minutes=60.0, bf16=None, log_every=50),
}


VIDEO_VAE = {
    "vae": VAEConfig(in_channels=3, latent_channels=4, channels=(16, 32, 32), spatial_compression=2,
                     temporal_compression=4, kl_weight=1e-3),
    "train": TrainConfig(steps=100_000, batch_size=8, lr=2e-3, ema_decay=0.995, grad_clip=1.0, max_minutes=12.0,
                         seed=0, bf16=False, log_every=25),
    "n_videos": 8000,
}


IMAGE_VAE = {  # lesson 06's 2-D-latent digit models (not shipped: they train in seconds)
    "train": TrainConfig(steps=1500, batch_size=128, lr=2e-3, ema_decay=0.99, seed=0),
}


TEXT_ENCODER = {
    "clip": TinyCLIPConfig(text=TextEncoderConfig(words=[], max_length=8, hidden_size=64, num_layers=2, num_heads=4),
                           latent_channels=4, video_width=64, embed_dim=64, word_loss_weight=1.0),
    # defined by its steps (about 3 minutes on 2 threads); max_minutes is a safety cap only
    "train": TrainConfig(steps=1400, batch_size=64, lr=1e-3, ema_decay=0.99, grad_clip=1.0, max_minutes=10.0,
                         seed=0, bf16=False, log_every=25),
    "n_videos": 6000,
}


T2V_MMDIT = {
    "mmdit": MMDiTConfig(in_channels=16, patch_size=2, vec_in_dim=64, context_in_dim=64, hidden_size=128,
                         mlp_ratio=4.0, num_heads=4, depth=2, depth_single_blocks=2, axes_dim=(8, 12, 12),
                         repa_dim=64, repa_depth=2, cond_embed=True),
    # one stage of 10,000 steps; max_minutes is a safety cap only (the recipe is its steps, the same on every machine)
    "train": TrainConfig(steps=10_000, batch_size=16, lr=3e-3, lr_schedule="cosine", warmup_steps=100,
                         ema_decay=0.995, grad_clip=1.0, max_minutes=90.0, seed=0, bf16=False, log_every=25),
    # what each step practises (t2v_loss_fn): a still (t2i: the first latent frame alone, a third of the tokens, where
    # the glyph is learnt) or image-to-video (i2v: the whole video with its first latent frame given, where the motion
    # is learnt). Sampling then goes text -> image -> video, as Open-Sora v2's t2i2v.
    "tasks": {"t2i": 0.75, "i2v": 0.25},
    # an optional first stage of stills alone (t2v_mmdit(image_steps=...)); the benchmarks' "staged" recipe: 7,000
    "image_train": None,
    "n_videos": 20000,
    "data_seed": 10,
    # the caption is replaced by "" (txt and y_vec together) with this probability; Open-Sora instead drops txt and
    # y_vec independently with sqrt(0.1) each, so both are dropped 10 % of the time but one of them 43 %
    "text_dropout": 0.1,
    "text_dropout_joint": True,
    # the time shift gamma of training and sampling: 3 puts the median training t at 0.75, where the glyph is
    # decided (benchmarks/image_stage.py: shift 1, 3, 6 measured; Open-Sora's resolution rule gives 1.56 here)
    "shift": 3.0,
    # REPA: align the video tokens after the 2nd double-stream block to the text encoder's video tower (lesson 07)
    "repa_weight": 0.5,
    "sampling": {"steps": 20, "cfg_scale": 7.0},
}


# `--preset gpu`: for one GPU (untested on one here: we have none; see the README): 3x wider, 3x deeper (Flux has
# 19 double + 38 single blocks at width 3072), twice the videos, 8x the batch and bf16 where the GPU has it. Same
# latent grid: more frames or 64x64 videos would first need the video VAE and text encoder retrained for them.
T2V_MMDIT_GPU = {
    **T2V_MMDIT,  # what differs from the default recipe:
    "mmdit": replace(T2V_MMDIT["mmdit"], hidden_size=384, num_heads=6, depth=4, depth_single_blocks=8,
                     axes_dim=(16, 24, 24)),
    "train": replace(T2V_MMDIT["train"], steps=60_000, batch_size=128, lr=1e-3, warmup_steps=500, ema_decay=0.999,
                     max_minutes=180.0, bf16=None, log_every=50),
    "n_videos": 40_000,
}

PRESETS = {"dit-digits": {"default": DIT_DIGITS, "gpu": DIT_DIGITS_GPU},
           "t2v-mmdit": {"default": T2V_MMDIT, "gpu": T2V_MMDIT_GPU}}


def settings(name: str, preset: str = "default") -> dict:
    """Recipe `name`'s settings for `preset` ("default" is the one the shipped checkpoint was made with)."""
    options = PRESETS.get(name, {"default": None})
    if preset not in options:
        have = ", ".join(f"{n} ({', '.join(p)})" for n, p in PRESETS.items())
        raise ValueError(f"recipe {name} has no preset {preset!r}; presets: {have}")
    return options[preset]


TRAIN_OVERRIDES = ("batch_size", "bf16")  # what the CLI's --batch-size and --precision may change


def with_overrides(base: TrainConfig, minutes: float | None, steps: int | None,
                 device: torch.device | str | None = None, **overrides) -> TrainConfig:
    """A copy of a recipe's TrainConfig with the caller's overrides (minutes, steps, and any of TRAIN_OVERRIDES
    that is not None); bf16 None ("where it is fast") resolved for `device`, so the card records what ran."""
    unknown = set(overrides) - set(TRAIN_OVERRIDES)
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)} of a recipe; only {list(TRAIN_OVERRIDES)}")
    cfg = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if minutes is not None:
        cfg.max_minutes = minutes
    if steps is not None:
        cfg.steps = steps
    if cfg.bf16 is None:
        cfg.bf16 = bf16_is_fast(device)
    return cfg


@dataclass
class RecipeRun:
    """What every recipe returns: the model to ship and sample from (the EMA copy, on the CPU, in eval mode), its
    kind and model card (the recipe's settings, the training figures, metrics), and the training run itself
    (`train.TrainResult`: the loss history, steps, minutes; None for the judge, which has its own loop)."""

    model: torch.nn.Module
    kind: str
    card: dict
    result: TrainResult | None = None


def make_card(name: str, result: TrainResult, recipe: dict, preset: str = "default", **fields) -> dict:
    """The model card of a trained recipe: its settings (`recipe`), the training figures, then `fields`."""
    card = {"recipe": name, "recipe_config": recipe, "train_minutes": round(result.minutes, 2),
            "train_steps": result.step, "threads": torch.get_num_threads(),
            "final_loss": round(sum(result.losses[-100:]) / max(1, min(100, len(result.losses))), 5)}
    if preset != "default":
        card["preset"] = preset
    if result.world_size > 1 or not result.device.startswith("cpu"):  # not for one CPU process
        card |= {"world_size": result.world_size, "device": result.device}
    return card | fields


def run_of(name: str, kind: str, result: TrainResult, recipe: dict, preset: str = "default", **fields) -> RecipeRun:
    """The RecipeRun of a finished training run: its EMA model on the CPU, in eval mode, with its card."""
    return RecipeRun(result.ema.cpu().eval(), kind, make_card(name, result, recipe, preset, **fields), result)
