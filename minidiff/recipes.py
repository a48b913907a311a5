"""The exact recipes that produce every shipped checkpoint in data/pretrained/.

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

import argparse
import hashlib
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import ddpm, distributed, flow
from .checks import check_number
from .data import caption_table, load_digits
from .eval import class_accuracy, retrieval_top1, train_classifier
from .models.dit import DiT, DiTConfig
from .models.layers import drop_labels
from .models.mmdit import MMDiTConfig
from .models.text import TextEncoderConfig, TinyCLIP, TinyCLIPConfig
from .models.unet import UNet, UNetConfig
from .models.vae import ImageVAE, ImageVAEConfig, VAEConfig, VideoVAE, encode_videos
from .pretrained import save_pretrained
from .schedules import make_schedule
from .train import TrainConfig, train
from .utils import bf16_is_fast, seed_everything

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


TRAIN_OVERRIDES = ("batch_size", "bf16")  # what the CLI's --batch-size and --precision may change


def _train_config(base: TrainConfig, minutes: float | None, steps: int | None,
                  checkpoint_path: str | None = None, device: torch.device | str | None = None,
                  **overrides) -> TrainConfig:
    """A copy of a recipe's TrainConfig with the caller's overrides (minutes, steps, and any of TRAIN_OVERRIDES
    that is not None); bf16 'auto' resolved for `device` so the card records it."""
    unknown = set(overrides) - set(TRAIN_OVERRIDES)
    if unknown:
        raise ValueError(f"cannot override {sorted(unknown)} of a recipe; only {list(TRAIN_OVERRIDES)}")
    cfg = TrainConfig(**{**base.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    if minutes is not None:
        cfg.max_minutes = minutes
    if steps is not None:
        cfg.steps = steps
    cfg.checkpoint_path = checkpoint_path
    if cfg.bf16 is None:
        cfg.bf16 = bf16_is_fast(device)
    return cfg


def _public(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.__dict__.items() if k != "checkpoint_path"}


def _card(name: str, result, recipe: dict, preset: str = "default") -> dict:
    card = {"recipe": name, "recipe_config": recipe, "train_minutes": round(result.minutes, 2),
            "train_steps": result.step, "threads": torch.get_num_threads(),
            "final_loss": round(sum(result.losses[-100:]) / min(100, len(result.losses)), 5)}
    if preset != "default":
        card["preset"] = preset
    if result.world_size > 1 or not result.device.startswith("cpu"):  # the shipped cards stay as they were
        card |= {"world_size": result.world_size, "device": result.device}
    return card


def _label_cond(y: torch.Tensor | None, num_classes: int, label_dropout: float, g: torch.Generator) -> dict | None:
    """cond={"y": labels}, each replaced by the null label with probability `label_dropout` (for guidance)."""
    return None if y is None else {"y": drop_labels(y, num_classes, label_dropout, g)}


def flow_loss_fn(num_classes: int, label_dropout: float, logit_normal: bool = True):
    """Flow matching's velocity loss with label dropout, as loss_fn(model, x, y, generator) for `train`."""

    def loss_fn(model, x, y, g):
        return flow.flow_loss(model, x, cond=_label_cond(y, num_classes, label_dropout, g), generator=g,
                              logit_normal=logit_normal)

    return loss_fn


def _flow_digits_recipe(r: dict, make_model, minutes: float | None, steps: int | None, progress: bool,
                        checkpoint_path: str | None, device: torch.device | str | None = None, **overrides):
    """Train make_model() with rectified flow on the digits' train split, as recipe `r` says."""
    seed_everything(r["train"].seed)
    cfg = _train_config(r["train"], minutes, steps, checkpoint_path, device, **overrides)
    x, y = load_digits(16, split="train")  # the other half is the benchmarks' held-out reference
    model = make_model()
    result = train(model, flow_loss_fn(model.config.num_classes, r["label_dropout"], r["logit_normal"]), (x, y), cfg,
                   device=device, progress=progress)
    recipe = {"objective": "rectified flow, v = eps - x0, t = 1 is noise", "logit_normal": r["logit_normal"],
              "label_dropout": r["label_dropout"], "data": "digits-16 train split", "train": _public(cfg)}
    return result, recipe


def flow_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                checkpoint_path: str | None = None, device: torch.device | str | None = None, **overrides):
    """Lesson 04: the same U-Net as ddpm-digits, trained with rectified flow (logit-normal t) on the train split.
    `device` (default: where the model is made, the CPU) and `overrides` (batch_size, bf16) are the CLI's."""
    return _flow_digits_recipe(FLOW_DIGITS, lambda: UNet(FLOW_DIGITS["unet"]), minutes, steps, progress,
                               checkpoint_path, device, **overrides)


def dit_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
               checkpoint_path: str | None = None, device: torch.device | str | None = None,
               preset: str = "default", **overrides):
    """Lesson 05's class-conditional DiT, trained with rectified flow (logit-normal t, 10 % label dropout);
    preset "gpu" is DIT_DIGITS_GPU."""
    r = _preset("dit-digits", preset)
    return _flow_digits_recipe(r, lambda: DiT(r["dit"]), minutes, steps, progress, checkpoint_path, device,
                               **overrides)


def video_vae(minutes: float | None = None, steps: int | None = None, progress: bool = True,
              checkpoint_path: str | None = None, device: torch.device | str | None = None, **overrides):
    """Lesson 06's causal video VAE on moving digits (train combinations), then its latent scaling factor.

    Returns (TrainResult whose `ema` has config.scaling_factor = 1 / std of the latent means of 1,000 training videos,
    recipe dict)."""
    from .data import moving_digits

    r = VIDEO_VAE
    seed_everything(r["train"].seed)
    cfg = _train_config(r["train"], minutes, steps, checkpoint_path, device, **overrides)
    videos = moving_digits(r["n_videos"], seed=0, split="train").videos
    result = train(VideoVAE(r["vae"]), lambda m, x, y, g: m.loss(x, g), (videos, None), cfg, device=device,
                   progress=progress)
    vae = result.ema.cpu().eval()
    with torch.no_grad():
        mean, _ = vae.encode(videos[:1000])
    vae.config.scaling_factor = round(1.0 / float(mean.std()), 5)
    recipe = {"data": f"moving digits, {r['n_videos']} train-split videos (seed 0), 9 frames of 32x32",
              "vae": r["vae"].to_dict() | {"scaling_factor": "1 / std of latent means, 1000 videos"},
              "train": _public(cfg)}
    return result, recipe


def autoencoder_loss(model: ImageVAE, x: torch.Tensor, y, generator: torch.Generator) -> torch.Tensor:
    """A plain autoencoder's loss on an ImageVAE: the code is the encoder's mean, no noise, no KL:
    ||x - Dec(Enc(x))||^2 (averaged per pixel)."""
    mean, _ = model.encode(x)
    return F.mse_loss(model.decode(mean), x)


def image_vae(kl_weight: float | None, steps: int | None = None, progress: bool = True) -> ImageVAE:
    """Lesson 06's digit model with a 2-D latent: kl_weight None trains a plain autoencoder (autoencoder_loss),
    a number trains a VAE with that KL weight (ImageVAE.loss). Returns the EMA model, on the CPU, in eval mode."""
    cfg = _train_config(IMAGE_VAE["train"], None, steps, None)
    seed_everything(cfg.seed)
    model = ImageVAE(ImageVAEConfig(latent_dim=2, kl_weight=kl_weight or 0.0))
    loss = autoencoder_loss if kl_weight is None else (lambda m, x, y, g: m.loss(x, g))
    return train(model, loss, (load_digits(16)[0], None), cfg, progress=progress).ema.cpu().eval()


def text_encoder(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                 checkpoint_path: str | None = None, n_videos: int | None = None, n_eval: int = 500,
                 device: torch.device | str | None = None, word_loss_weight: float | None = None, **overrides):
    """Lesson 07's tiny CLIP: the text encoder trained contrastively against the shipped video VAE's latents of
    moving digits (train combinations), with a per-token word loss. `n_videos` (default the recipe's) and `n_eval`
    (videos per split for the retrieval metrics) let the lesson run a smaller version; `word_loss_weight` (default
    the recipe's; 0: CLIP's loss alone) lets the benchmarks swap the encoder's words. Returns (TrainResult, recipe
    dict, metrics)."""
    from .data import caption_index, caption_words, moving_digits
    from .pretrained import load_pretrained

    r = TEXT_ENCODER
    seed_everything(r["train"].seed)
    cfg = _train_config(r["train"], minutes, steps, checkpoint_path, device, **overrides)
    vae, _ = load_pretrained("video-vae")
    n_videos = n_videos or r["n_videos"]
    md = moving_digits(n_videos, seed=2, split="train")
    latents = encode_videos(vae, md.videos)
    index = caption_index(md.digits, md.colours, md.directions)
    table = caption_table()
    config = TinyCLIPConfig.from_dict(r["clip"].to_dict())
    config.text.words = caption_words()
    if word_loss_weight is not None:
        config.word_loss_weight = word_loss_weight
    result = train(TinyCLIP(config), lambda m, x, y, g: m.loss(x, [table[i] for i in y.tolist()]),
                   (latents, index), cfg, device=device, progress=progress)
    clip = result.ema.cpu().eval()
    metrics = {}
    for split in ("train", "heldout"):
        ev = moving_digits(n_eval, seed=3, split=split)
        metrics[f"retrieval_top1_{split}"] = round(retrieval_top1(
            clip, encode_videos(vae, ev.videos), caption_index(ev.digits, ev.colours, ev.directions)), 4)
    metrics["source"] = f"recipes.text_encoder: {n_eval} videos per split (seed 3), top-1 caption among all 240"
    from .eval import text_probe

    metrics["text_probe"] = text_probe(*text_table(clip, table))
    recipe = {"data": f"{n_videos} moving-digit videos (train split, seed 2) as video-vae latents",
              "word_loss_weight": config.word_loss_weight, "train": _public(cfg)}
    return result, recipe, metrics


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
    # an optional first stage of stills alone (t2v_mmdit(image_steps=...)); the recipe before this one had 7,000
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


def _preset(name: str, preset: str) -> dict:
    """Recipe `name`'s settings for `preset` ("default" is the one the shipped checkpoint was made with)."""
    options = PRESETS.get(name, {"default": None})
    if preset not in options:
        have = ", ".join(f"{n} ({', '.join(p)})" for n, p in PRESETS.items())
        raise ValueError(f"recipe {name} has no preset {preset!r}; presets: {have}")
    return options[preset]


CACHE_DIR = Path(__file__).resolve().parents[1] / "data" / "cache"  # ignored by git; safe to delete


def _weights_digest(model: torch.nn.Module) -> str:
    """A short fingerprint of a model's weights (the latent cache is only valid for the VAE that made it)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def cached_video_latents(vae: VideoVAE, n_videos: int, seed: int, split: str = "train"
                         ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """(scaled latent means, caption indices, video shape) of moving_digits(n_videos, seed, split), encoded once and
    kept in data/cache/ (keyed by the VAE's weights, so a different VAE never reuses them)."""
    from . import checkpoint
    from .data import caption_index, moving_digits

    path = CACHE_DIR / f"latents-{split}-{n_videos}-{seed}-{_weights_digest(vae)}.safetensors"
    if path.exists():
        try:
            tensors, meta = checkpoint.load(str(path))
            return tensors["latents"], tensors["index"], tuple(meta["video_shape"])
        except (ValueError, KeyError):
            path.unlink()  # a damaged cache file: encode again
    md = moving_digits(n_videos, seed=seed, split=split)
    latents = encode_videos(vae, md.videos)
    index = caption_index(md.digits, md.colours, md.directions)
    checkpoint.save_atomic(str(path), {"latents": latents, "index": index},
                           {"video_shape": list(md.videos.shape[1:])})
    return latents, index, tuple(md.videos.shape[1:])


def text_table(clip, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen text encoder's (txt, y_vec) for a list of prompts, computed once (Open-Sora and DiffSynth-Studio
    treat the condition encoders as frozen too, so their outputs can be cached)."""
    with torch.no_grad():
        return clip.text_encoder(prompts)


T2V_TASKS = ("t2i", "i2v", "t2v")


def check_tasks(tasks: dict[str, float]) -> dict[str, float]:
    """{task: probability} over T2V_TASKS, probabilities >= 0 adding up to 1."""
    if not isinstance(tasks, dict) or not tasks or set(tasks) - set(T2V_TASKS):
        raise ValueError(f"tasks must map some of {T2V_TASKS} to probabilities, got {tasks!r}")
    total = sum(check_number(f"tasks[{k!r}]", v, low=0.0) for k, v in tasks.items())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"the task probabilities must add up to 1, got {total:g} ({tasks})")
    return dict(tasks)


def t2v_loss_fn(txt_table: torch.Tensor, vec_table: torch.Tensor, null_index: int, text_dropout: float,
                shift: float, joint: bool = True, repa_encoder: torch.nn.Module | None = None,
                repa_weight: float = 0.0, tasks: dict[str, float] | None = None):
    """Rectified flow on scaled video latents, conditioned on caption `y` (an index into the text tables):
    the caption is dropped to the empty one ("", index `null_index`) with probability `text_dropout` for guidance
    (txt and y_vec together if `joint`, else each on its own, as Open-Sora does); t is logit-normal, then shifted by
    `shift`; the target is v = noise - x_0. With a `repa_encoder` (a frozen video tower with .features), REPA's
    alignment term is added with `repa_weight` (minidiff.repa).

    `tasks` ({task: probability}, default {"t2v": 1}) says what each step practises on its batch of latent videos,
    one task per step: "t2i" the first latent frame alone (an image: the causal VAE encodes frame 0 by itself),
    "i2v" the whole video with its first latent frame given (`i2v_condition`, for an MMDiT with cond_embed), "t2v"
    the whole video with nothing given."""
    from . import repa
    from .models.mmdit import i2v_condition

    tasks = check_tasks(tasks or {"t2v": 1.0})
    names, weights = list(tasks), torch.tensor(list(tasks.values()), dtype=torch.float64)

    def loss_fn(model, x, y, g):
        task = names[int(torch.multinomial(weights, 1, generator=g))] if len(names) > 1 else names[0]
        it = drop_labels(y, null_index, text_dropout, g)
        iv = it if joint else drop_labels(y, null_index, text_dropout, g)
        cond = {"txt": txt_table.to(x.device)[it], "y_vec": vec_table.to(x.device)[iv]}
        if task == "t2i":
            x = x[:, :, :1]
        elif task == "i2v":
            cond["cond"] = i2v_condition(x[:, :, :1], x.shape[2])
        if repa_encoder is None:
            return flow.flow_loss(model, x, cond=cond, generator=g, logit_normal=True, shift=shift)
        p = model.config.patch_size
        with torch.no_grad():
            targets = repa.token_targets(repa_encoder.features(x), x.shape[-2] // p, x.shape[-1] // p)
        return repa.flow_repa_loss(model, x, targets, repa_weight, cond=cond, generator=g, shift=shift)

    return loss_fn


def oracle_text_table(prompts: list[str], width: int = 64, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfect text encoder for the caption grammar, as an upper bound: txt (N, length, width) holds a one-hot of
    each word at its token position ([BOS] at 0 left empty), y_vec (N, width) one-hots of the digit, colour and
    direction (all zero for "")."""
    from .data import COLOUR_NAMES, DIRECTION_NAMES, caption_words

    words = caption_words()
    if len(words) > width or 10 + len(COLOUR_NAMES) + len(DIRECTION_NAMES) > width:
        raise ValueError(f"width {width} is too small for one-hots of {len(words)} words")
    txt, vec = torch.zeros(len(prompts), length, width), torch.zeros(len(prompts), width)
    for i, prompt in enumerate(prompts):
        for j, w in enumerate(prompt.split()):
            txt[i, j + 1, words.index(w)] = 1.0
        if prompt:
            _, colour, digit, _, direction = prompt.split()
            vec[i, int(digit)] = 1.0
            vec[i, 10 + COLOUR_NAMES.index(colour)] = 1.0
            vec[i, 10 + len(COLOUR_NAMES) + DIRECTION_NAMES.index(direction)] = 1.0
    return txt, vec


def t2v_mmdit(minutes: float | None = None, steps: int | None = None, progress: bool = True,
              checkpoint_path: str | None = None, n_videos: int | None = None, config: MMDiTConfig | None = None,
              train_config: TrainConfig | None = None, tasks: dict[str, float] | None = None,
              image_steps: int | None = None, image_train_config: TrainConfig | None = None,
              evaluate: bool = True, device: torch.device | str | None = None, preset: str = "default",
              repa_weight: float | None = None, shift: float | None = None,
              text_features: tuple[torch.Tensor, torch.Tensor] | None = None,
              callback=None, callback_every: int = 0, **overrides):
    """Lesson 08's text-to-video MMDiT on moving digits (train combinations). The shipped video VAE and text encoder
    are frozen; their outputs are computed once. One stage ("main", `steps`, default the recipe's) in which each step
    practises one of `tasks` (default the recipe's: stills and image-to-video, see t2v_loss_fn), optionally after a
    stage of stills alone ("stills": `image_steps` steps, or `image_train_config`, as the recipe before this one).

    `minutes` caps the whole run's wall time (a safety cap: the recipe is defined by its steps). `config` /
    `train_config` / `repa_weight` / `shift` let the lesson and the benchmarks train variants; `text_features` =
    (txt, y_vec) tables of the 240 captions and "" replace the text encoder's (e.g. `oracle_text_table`).
    `callback(stage, step, ema)` runs every `callback_every` steps of each stage. `preset` "gpu" is T2V_MMDIT_GPU.
    Under torchrun only rank 0 evaluates. Returns (TrainResult of the last stage, recipe dict, card fields: the
    pipeline settings, the steps per second of each stage and, if `evaluate`, prompt adherence)."""
    from .models.mmdit import MMDiT
    from .pretrained import load_pretrained

    r = _preset("t2v-mmdit", preset)
    base = train_config or r["train"]
    image_base = image_train_config or r["image_train"]
    if image_steps is not None:
        image_base = replace(image_base or base, steps=image_steps) if image_steps > 0 else None
    tasks = check_tasks(tasks or r["tasks"])
    seed_everything(base.seed)
    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    n_videos = n_videos or r["n_videos"]
    latents, index, video_shape = cached_video_latents(vae, n_videos, r["data_seed"])
    prompts = caption_table() + [""]
    txt, vec = text_features if text_features is not None else text_table(clip, prompts)
    if txt.shape[0] != len(prompts) or vec.shape[0] != len(prompts):
        raise ValueError(f"text_features must hold (txt, y_vec) for the {len(prompts)} captions and \"\", got "
                         f"{tuple(txt.shape)} and {tuple(vec.shape)}")
    mcfg = MMDiTConfig.from_dict((config or r["mmdit"]).to_dict())
    mcfg.context_in_dim, mcfg.vec_in_dim = txt.shape[-1], vec.shape[-1]
    if "i2v" in tasks and not mcfg.cond_embed:
        raise ValueError("the task 'i2v' needs an MMDiT with cond_embed=True (an image-conditioning input)")
    weight = r["repa_weight"] if repa_weight is None else repa_weight
    if not weight:
        mcfg.repa_dim = 0  # no projector to train (DDP would find it unused)
    shift = r["shift"] if shift is None else shift
    encoder = clip.video_encoder.eval().requires_grad_(False) if weight else None
    if encoder is not None:
        encoder.to(distributed.context().device(device) or "cpu")
    model = MMDiT(mcfg)
    stages = ([("stills", image_base, {"t2i": 1.0})] if image_base is not None else []) + [("main", base, tasks)]
    pace = {}
    trained = 0.0  # minutes of training so far (a callback's time is not counted, as in `train`)
    for name, stage_base, stage_tasks in stages:
        loss = t2v_loss_fn(txt, vec, len(txt) - 1, r["text_dropout"], shift, r["text_dropout_joint"], encoder, weight,
                           stage_tasks)
        left = None if minutes is None else max(minutes - trained, 1e-3)
        ckpt = None if checkpoint_path is None else (checkpoint_path if name == "main" else
                                                     f"{checkpoint_path}.{name}")
        cfg = _train_config(stage_base, left, steps if name == "main" else None, ckpt, device, **overrides)
        if minutes is None:
            cfg.max_minutes = stage_base.max_minutes
        cb = None if callback is None else (lambda step, ema, name=name: callback(name, step, ema))
        result = train(model, loss, (latents, index), cfg, device=device, progress=progress, callback=cb,
                       callback_every=callback_every)
        model = result.model
        trained += result.minutes
        pace[name] = {"steps": result.step, "minutes": round(result.minutes, 2),
                      "steps_per_second": round(result.step / max(result.minutes * 60, 1e-9), 3),
                      "stopped_by": result.stopped_by, "tasks": stage_tasks, "train": _public(cfg)}
    pipeline = {"vae": "video-vae", "text_encoder": "text-encoder", "frames": video_shape[1],
                "height": video_shape[2], "width": video_shape[3], "shift": shift, **r["sampling"]}
    recipe = {"objective": "rectified flow on scaled video-vae latent means, v = noise - x0, t = 1 is noise",
              "t": f"logit-normal, then time_shift(gamma={shift:g})",
              "tasks": {name: v["tasks"] for name, v in pace.items()},
              "task_meaning": "each step one task: t2i the first latent frame alone (a still), i2v the whole video "
                              "with its first latent frame given (cond_in), t2v the whole video with nothing given",
              "sampling": "text -> image -> video (the first latent frame, then the video with it given)"
                          if mcfg.cond_embed else "text -> video in one pass",
              "repa": (f"weight {weight:g}: the video tokens after double-stream block {mcfg.repa_depth}, "
                       "projected, aligned (1 - cosine) to the text encoder's video tower's features of the clean "
                       "latents" if weight else "none"),
              "text_dropout": r["text_dropout"], "text_dropout_joint": r["text_dropout_joint"],
              "text": "the shipped text-encoder" if text_features is None else "given text_features",
              "data": f"{n_videos} moving-digit videos (train split, seed {r['data_seed']}) encoded once; text "
                      "embeddings of the 240 captions and \"\" cached",
              "train": pace["main"]["train"], **({"image_train": pace["stills"]["train"]} if "stills" in pace
                                                 else {})}
    fields = {"pipeline": pipeline, "stages": {k: {kk: vv for kk, vv in v.items() if kk not in ("train", "tasks")}
                                               for k, v in pace.items()}}
    result.minutes = trained
    result.step = sum(v["steps"] for v in pace.values())
    if evaluate and distributed.is_main() and text_features is None:
        from .eval import prompt_adherence
        from .pipeline import TextToVideo

        judge, _ = load_pretrained("digit-classifier")
        settings = {k: v for k, v in pipeline.items() if k not in ("vae", "text_encoder")}
        # on the CPU, where the judge is
        pipe = TextToVideo(result.ema.cpu().eval(), vae, clip.text_encoder.eval(), **settings)
        fields["metrics"] = {split: prompt_adherence(pipe, judge, split, seed=1) for split in ("train", "heldout")}
        fields["metrics"]["source"] = (f"recipes.t2v_mmdit: every caption of the split once (seed 1), "
                                       f"{pipeline['steps']} Euler steps, guidance {pipeline['cfg_scale']}")
    return result, recipe, fields


def ddpm_loss_fn(schedule, num_classes: int, label_dropout: float):
    """L_simple with labels replaced by the null class with probability `label_dropout` (ready for CFG)."""

    def loss_fn(model, x, y, g):
        return ddpm.ddpm_loss(model, schedule, x, cond=_label_cond(y, num_classes, label_dropout, g), generator=g)

    return loss_fn


def ddpm_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                checkpoint_path: str | None = None, device: torch.device | str | None = None, **overrides):
    """Train the class-conditional U-Net DDPM on the 16x16 digits. Returns (TrainResult, schedule, recipe dict)."""
    r = DDPM_DIGITS
    seed_everything(r["train"].seed)
    cfg = _train_config(r["train"], minutes, steps, checkpoint_path, device, **overrides)
    x, y = load_digits(16, split="train")  # the other half is the benchmarks' held-out reference
    schedule = make_schedule(r["schedule"], r["T"])
    model = UNet(r["unet"])
    result = train(model, ddpm_loss_fn(schedule, r["unet"].num_classes, r["label_dropout"]), (x, y), cfg,
                   device=device, progress=progress)
    recipe = {"schedule": r["schedule"], "T": r["T"], "label_dropout": r["label_dropout"],
              "data": "digits-16 train split",
              "train": _public(cfg)}
    return result, schedule, recipe


def digit_classifier(progress: bool = True, root: str | Path | None = None):
    """The judge: trained on the digits' train split only (899), so the held-out reference split (898) that the
    Fréchet distance compares against, and the held-out videos' glyphs, are digits it never saw; its card states its
    accuracy on that reference split."""
    x, y = load_digits(16, split="train")
    x_ref, y_ref = load_digits(16, split="reference")
    t0 = time.perf_counter()
    judge = train_classifier(x, y, steps=1500, seed=0, progress=progress)
    minutes = (time.perf_counter() - t0) / 60
    card = {"recipe": "digit-classifier",
            "metrics": {"held_out_accuracy": round(class_accuracy(judge, x_ref, y_ref), 4), "held_out_n": len(x_ref),
                        "held_out_split": "reference"},
            "train_minutes": round(minutes, 2), "threads": torch.get_num_threads(),
            "notes": f"trained on the {len(x)} train-split digits only (never the reference split it is used to "
                     "compare against, nor the held-out videos' glyphs), +-1 pixel shift augmentation, 1500 Adam "
                     "steps, batch 128; held_out_accuracy is this judge's accuracy on the reference split"}
    if root is not None:
        save_pretrained("digit-classifier", judge, "digit-classifier", card, root)
    return judge, card


def _run_ddpm_digits(minutes, ckpt=None, **kw):
    result, _, recipe = ddpm_digits(minutes=minutes, checkpoint_path=ckpt, **kw)
    return result, recipe, "unet", {}


def _run_text_encoder(minutes, ckpt=None, **kw):
    result, recipe, metrics = text_encoder(minutes=minutes, checkpoint_path=ckpt, **kw)
    return result, recipe, "tiny-clip", {"metrics": metrics}


# name -> ((minutes, checkpoint_path, device=, preset=, batch_size=, bf16=) -> (TrainResult, recipe dict, model kind,
# extra card fields)), for the CLI; `preset` is passed only to the recipes in PRESETS
_RUNS = {
    "ddpm-digits": _run_ddpm_digits,
    "flow-digits": lambda minutes, ckpt=None, **kw: (*flow_digits(minutes=minutes, checkpoint_path=ckpt, **kw),
                                                     "unet", {}),
    "dit-digits": lambda minutes, ckpt=None, **kw: (*dit_digits(minutes=minutes, checkpoint_path=ckpt, **kw),
                                                    "dit", {}),
    "video-vae": lambda minutes, ckpt=None, **kw: (*video_vae(minutes=minutes, checkpoint_path=ckpt, **kw), "vae",
                                                   {}),
    "text-encoder": _run_text_encoder,
    "t2v-mmdit": lambda minutes, ckpt=None, **kw: _with_kind(t2v_mmdit(minutes=minutes, checkpoint_path=ckpt, **kw),
                                                             "mmdit"),
}


def _with_kind(run: tuple, kind: str) -> tuple:
    result, recipe, fields = run
    return result, recipe, kind, fields


RUNS_DIR = Path(__file__).resolve().parents[1] / "runs"  # ignored by git


def _minutes(text: str) -> float:
    """argparse type of --minutes: a finite number of minutes > 0 (NaN would train forever, 0 not at all)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of minutes > 0, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    """argparse type of --steps and --batch-size: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return v


def check_device(name: str | None) -> torch.device:
    """The --device to train on: None = the best available (CUDA, then MPS, then the CPU); a device that is not there
    is an error that says what is."""
    from .utils import device as best_device

    if name is None or name == "auto":
        return best_device()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: PyTorch sees no CUDA GPU here (torch.cuda.is_available() is False; a "
                         "CPU-only torch build, or no driver); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices (0-based)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: minidiff trains on cpu, cuda or mps")
    return dev


def install(name: str, run_dir: str | Path, root: str | Path | None = None) -> None:
    """Copy run_dir/NAME.{safetensors,json} over the shipped root/NAME.* : each is first copied to a temporary
    file next to its target, then renamed over it (weights first, then the card), so the shipped files are never
    half-written and stay as they were if the run's files are missing."""
    import shutil

    from . import checkpoint
    from .pretrained import ROOT, load_pretrained

    root = Path(root) if root is not None else ROOT
    run_dir = Path(run_dir)
    load_pretrained(name, run_dir)  # the new files are complete and consistent, or this raises
    for ext in (".safetensors", ".json"):
        src = run_dir / f"{name}{ext}"
        checkpoint.write_atomic(root / f"{name}{ext}", lambda tmp, src=src: shutil.copyfile(src, tmp), ext)


def _main(argv: list[str] | None = None) -> int:
    from . import checkpoint
    from .pretrained import ROOT

    p = argparse.ArgumentParser(prog="python -m minidiff.recipes", description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=["digit-classifier", *_RUNS])
    p.add_argument("--minutes", type=_minutes, default=None, help="override the training time budget (minutes > 0)")
    p.add_argument("--steps", type=_positive_int, default=None, help="override the number of optimiser steps")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="override the (global) batch size; under torchrun it must divide by --nproc_per_node")
    p.add_argument("--preset", default="default",
                   help="default (the shipped checkpoint's settings) or gpu (a larger model for one GPU: "
                        f"{', '.join(PRESETS)})")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:N or mps (default: the best available; under torchrun each process takes "
                        "cuda:LOCAL_RANK)")
    p.add_argument("--precision", choices=["recipe", "bf16", "fp32"], default="recipe",
                   help="bf16 autocast or fp32 (default: the recipe's, resolved for the device)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="write a training checkpoint here every few hundred steps and resume from it if it exists "
                        "(an interrupted run continues where it stopped; the time budget restarts)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write NAME.safetensors and NAME.json (default: runs/NAME/)")
    p.add_argument("--install", action="store_true",
                   help="then replace the shipped data/pretrained/NAME.* with the new model (without this flag the "
                        "shipped files are never touched)")
    a = p.parse_args(argv)
    out = Path(a.out) if a.out else RUNS_DIR / a.name
    try:
        ctx = distributed.context()
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    main = ctx.is_main
    try:  # before training: a run must not fail at its first save, or lose its result at the last
        dev = check_device(a.device)
        if a.preset != "default":
            _preset(a.name, a.preset)
        if main:
            checkpoint.check_writable(out / f"{a.name}.json", "the output folder (--out)")
            if a.install:
                checkpoint.check_writable(ROOT / f"{a.name}.json", "the shipped models' folder")
            if a.checkpoint:
                checkpoint.check_writable(a.checkpoint, "--checkpoint")
    except (PermissionError, ValueError) as e:
        p.error(str(e))
    if a.name == "digit-classifier":
        if ctx.distributed:
            p.error("digit-classifier trains in about 2 minutes in one process; run it without torchrun")
        if a.steps or a.batch_size or a.preset != "default" or a.precision != "recipe" or a.minutes:
            p.error("digit-classifier has fixed settings; --minutes, --steps, --batch-size, --preset and "
                    "--precision do not apply to it")
        _, card = digit_classifier(root=out)
        print(card)
    else:
        kw = {"steps": a.steps, "device": dev, "batch_size": a.batch_size,
              "bf16": {"recipe": None, "bf16": True, "fp32": False}[a.precision]}
        if a.name in PRESETS:
            kw["preset"] = a.preset
        try:
            result, recipe, kind, fields = _RUNS[a.name](a.minutes, a.checkpoint, **kw)
        except ValueError as e:  # e.g. a batch size that does not divide by the number of processes
            print(f"error: {e}", file=sys.stderr)
            return 2
        if not main:  # rank 0 writes the files; the others are done
            return 0
        if result.step == 0:
            print(f"error: the time budget ended before the first training step; nothing was written (give more "
                  f"--minutes than {a.minutes})", file=sys.stderr)
            return 1
        card = _card(a.name, result, recipe, a.preset) | fields
        save_pretrained(a.name, result.ema, kind, card, out)
        print({k: v for k, v in card.items() if k != "recipe_config"})
    print(f"wrote {out / a.name}.safetensors and .json")
    if a.install:
        install(a.name, out, ROOT)
        print(f"installed them as {ROOT / a.name}.safetensors and .json")
    else:
        print(f"the shipped {ROOT / a.name}.* are unchanged (add --install to replace them)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The CLI, with torchrun's error recording (a failing rank's error appears in torchrun's summary) and the
    process group left at the end."""
    from torch.distributed.elastic.multiprocessing.errors import record

    try:
        return record(_main)(argv)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
