"""The exact recipes that produce every shipped checkpoint in data/pretrained/.

    configs.py    every recipe's settings (model, TrainConfig, data), the --preset gpu variants, `RecipeRun`
    images.py     ddpm-digits, flow-digits, dit-digits, lesson 06's image VAEs, the digit judge
    video.py      video-vae, text-encoder, t2v-mmdit (and its loss, t2v_loss_fn)
    __main__.py   the command line below

Every recipe returns a `RecipeRun`: the model to ship (the EMA copy), its kind, its card, and the training run.

A run writes runs/NAME/NAME.safetensors + NAME.json (or --out DIR); the shipped data/pretrained/NAME.* are replaced
only with --install, and only once the new files are complete.

    python -m minidiff.recipes digit-classifier
    python -m minidiff.recipes ddpm-digits [--minutes 5] [--install]
    python -m minidiff.recipes flow-digits [--minutes 5]
    python -m minidiff.recipes dit-digits [--minutes 5]
    python -m minidiff.recipes video-vae [--minutes 12]
    python -m minidiff.recipes text-encoder [--minutes 3]      # needs video-vae
    python -m minidiff.recipes t2v-mmdit [--minutes 30]        # needs video-vae and text-encoder
    python benchmarks/image_quality.py --record-in-card    # then measures ddpm-digits and adds its metrics

Beyond the laptop (README "Beyond the laptop"): `--device cuda`, `--precision bf16`, `--preset gpu` (a larger
model for one GPU, for dit-digits and t2v-mmdit), and several processes with the same command under torchrun:

    torchrun --standalone --nproc_per_node=2 -m minidiff.recipes flow-digits --steps 2000
"""

from __future__ import annotations

from .configs import (
    DDPM_DIGITS,
    DIT_DIGITS,
    DIT_DIGITS_GPU,
    FLOW_DIGITS,
    IMAGE_VAE,
    PRESETS,
    T2V_MMDIT,
    T2V_MMDIT_GPU,
    TEXT_ENCODER,
    TRAIN_OVERRIDES,
    VIDEO_VAE,
    RecipeRun,
    make_card,
    settings,
    with_overrides,
)
from .images import ddpm_digits, digit_classifier, dit_digits, flow_digits, image_vae
from .video import (
    T2V_TASKS,
    check_tasks,
    oracle_text_table,
    t2v_loss_fn,
    t2v_mmdit,
    text_encoder,
    text_table,
    video_vae,
)

__all__ = ["DDPM_DIGITS", "DIT_DIGITS", "DIT_DIGITS_GPU", "FLOW_DIGITS", "IMAGE_VAE", "PRESETS", "T2V_MMDIT",
           "T2V_MMDIT_GPU", "TEXT_ENCODER", "TRAIN_OVERRIDES", "VIDEO_VAE", "RecipeRun", "make_card", "settings",
           "with_overrides", "ddpm_digits", "digit_classifier", "dit_digits", "flow_digits", "image_vae",
           "T2V_TASKS", "check_tasks", "oracle_text_table", "t2v_loss_fn", "t2v_mmdit", "text_encoder", "text_table",
           "video_vae"]
