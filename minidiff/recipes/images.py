"""The image recipes: lesson 02's DDPM U-Net, lesson 04's rectified-flow U-Net, lesson 05's DiT, lesson 06's small
image VAEs, and the digit judge every lesson's measurements use."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data import load_digits
from ..ddpm import ddpm_loss_fn
from ..eval import class_accuracy, train_classifier
from ..flow import flow_loss_fn
from ..models.dit import DiT
from ..models.unet import UNet
from ..models.vae import ImageVAE, ImageVAEConfig, autoencoder_loss
from ..pretrained import save_pretrained
from ..schedules import make_schedule
from ..train import train
from ..utils import seed_everything
from .configs import DDPM_DIGITS, FLOW_DIGITS, IMAGE_VAE, RecipeRun, run_of, settings, with_overrides


def ddpm_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                checkpoint_path: str | None = None, device: torch.device | str | None = None,
                **overrides) -> RecipeRun:
    """Lesson 02: the class-conditional U-Net DDPM on the 16x16 digits' train split (the other half is the
    benchmarks' held-out reference). `device` and `overrides` (batch_size, bf16) are the CLI's."""
    r = DDPM_DIGITS
    seed_everything(r["train"].seed)
    cfg = with_overrides(r["train"], minutes, steps, device, **overrides)
    schedule = make_schedule(r["schedule"], r["T"])
    result = train(UNet(r["unet"]), ddpm_loss_fn(schedule, r["unet"].num_classes, r["label_dropout"]),
                   load_digits(16, split="train"), cfg, device=device, checkpoint_path=checkpoint_path,
                   progress=progress)
    recipe = {"schedule": r["schedule"], "T": r["T"], "label_dropout": r["label_dropout"],
              "data": "digits-16 train split", "train": cfg.to_dict()}
    return run_of("ddpm-digits", "unet", result, recipe)


def _rectified_flow_digits(name: str, kind: str, r: dict, model: torch.nn.Module, minutes: float | None,
                           steps: int | None, progress: bool, checkpoint_path: str | None,
                           device: torch.device | str | None, preset_name: str = "default",
                           **overrides) -> RecipeRun:
    """Train `model` with rectified flow on the digits' train split, as recipe `r` says."""
    cfg = with_overrides(r["train"], minutes, steps, device, **overrides)
    loss = flow_loss_fn(model.config.num_classes, r["label_dropout"], r["logit_normal"])
    result = train(model, loss, load_digits(16, split="train"), cfg, device=device,
                   checkpoint_path=checkpoint_path, progress=progress)
    recipe = {"objective": "rectified flow, v = eps - x0, t = 1 is noise", "logit_normal": r["logit_normal"],
              "label_dropout": r["label_dropout"], "data": "digits-16 train split", "train": cfg.to_dict()}
    return run_of(name, kind, result, recipe, preset_name)


def flow_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                checkpoint_path: str | None = None, device: torch.device | str | None = None,
                **overrides) -> RecipeRun:
    """Lesson 04: the same U-Net as ddpm-digits, trained with rectified flow (logit-normal t) on the train split."""
    seed_everything(FLOW_DIGITS["train"].seed)
    return _rectified_flow_digits("flow-digits", "unet", FLOW_DIGITS, UNet(FLOW_DIGITS["unet"]), minutes, steps,
                                  progress, checkpoint_path, device, **overrides)


def dit_digits(minutes: float | None = None, steps: int | None = None, progress: bool = True,
               checkpoint_path: str | None = None, device: torch.device | str | None = None,
               preset: str = "default", **overrides) -> RecipeRun:
    """Lesson 05's class-conditional DiT, trained with rectified flow (logit-normal t, 10 % label dropout);
    preset "gpu" is DIT_DIGITS_GPU."""
    r = settings("dit-digits", preset)
    seed_everything(r["train"].seed)
    return _rectified_flow_digits("dit-digits", "dit", r, DiT(r["dit"]), minutes, steps, progress, checkpoint_path,
                                  device, preset, **overrides)


def image_vae(kl_weight: float | None, steps: int | None = None, progress: bool = True) -> RecipeRun:
    """Lesson 06's digit model with a 2-D latent: kl_weight None trains a plain autoencoder (autoencoder_loss),
    a number trains a VAE with that KL weight (ImageVAE.loss). Not shipped: it trains in seconds."""
    cfg = with_overrides(IMAGE_VAE["train"], None, steps)
    seed_everything(cfg.seed)
    model = ImageVAE(ImageVAEConfig(latent_dim=2, kl_weight=kl_weight or 0.0))
    loss = autoencoder_loss if kl_weight is None else (lambda m, x, y, g: m.loss(x, g))
    result = train(model, loss, (load_digits(16)[0], None), cfg, progress=progress)
    recipe = {"kl_weight": kl_weight, "data": "digits-16, all", "train": cfg.to_dict()}
    return run_of("image-vae", "image-vae", result, recipe)


def digit_classifier(progress: bool = True, root: str | Path | None = None) -> RecipeRun:
    """The judge: trained on the digits' train split only (899), so the held-out reference split (898) that the
    Fréchet distance compares against, and the held-out videos' glyphs, are digits it never saw; its card states its
    accuracy on that reference split. Written to `root` if given."""
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
    return RecipeRun(judge, "digit-classifier", card)
