"""The open-ended projects' bars (lessons 05 and 08): what the lesson's starting recipe reaches on the project's
budget, and what a reference improvement reaches, each over several training seeds, so the bar sits between them
with the spread in view.

usage: python benchmarks/projects.py dit [--variants baseline,cosine] [--seeds 2] [--threads 2]
       python benchmarks/projects.py t2v [--seeds 2] [--threads 2]
Appends records to benchmarks/results/projects.json:
  {"project": "dit", "variant", "what", "train_seed", "train_steps", "batch_size", "train_seconds",
   "class_accuracy", "frechet", "n_samples", "threads", "date"}
Project "dit" (lesson 05): a class-conditional DiT trained from scratch on the digits' train split with a budget of
`PROJECT_DIT_IMAGES` training images (steps x batch) and at most `PROJECT_DIT_MAX_PARAMS` parameters, judged by the
digit classifier on 500 class-balanced samples (20 Euler steps, no guidance; `exercises.projects.evaluate_dit`).
Project "t2v" (lesson 08): a sampler for the shipped text-to-video pipeline with at most `PROJECT_T2V_EVALS` denoiser
evaluations per video, judged by prompt adherence over the 230 training captions
(`exercises.projects.evaluate_t2v_sampler`); --seeds noise seeds per sampler:
  {"project": "t2v", "variant", "what", "seed", "evals_per_video", "digit", "colour", "direction", "all_three",
   "n_videos", "std_error", "seconds", "threads", "date"}
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import time

import torch
from _results import append_records

DIT_VARIANTS = {
    "baseline": ("lesson 05's recipe as it is (constant lr 1e-3, batch 16)", {}, {}),
    "cosine": ("warm-up 50 steps, then a cosine decay of lr 2e-3", {"lr": 2e-3, "lr_schedule": "cosine",
                                                                    "warmup_steps": 50}, {}),
    "patch4": ("patch size 4 (16 tokens), width 192", {}, {"patch_size": 4, "hidden_size": 192}),
    "cosine-ema": ("as cosine, EMA decay 0.99", {"lr": 2e-3, "lr_schedule": "cosine", "warmup_steps": 50,
                                                 "ema_decay": 0.99}, {}),
    "cosine-3e-3": ("warm-up 100 steps, then a cosine decay of lr 3e-3", {"lr": 3e-3, "lr_schedule": "cosine",
                                                                          "warmup_steps": 100}, {}),
    "ema-0.99": ("lesson 05's recipe with EMA decay 0.99 (horizon 100 steps instead of 200)", {"ema_decay": 0.99}, {}),
    "cosine-b32": ("as cosine, batch 32 (half the steps)", {"lr": 2e-3, "lr_schedule": "cosine", "warmup_steps": 25,
                                                            "batch_size": 32}, {}),
}


def run_dit(variant: str, seed: int) -> dict:
    from minidiff.data import load_digits
    from minidiff.exercises.projects import PROJECT_DIT_IMAGES, evaluate_dit
    from minidiff.flow import flow_loss_fn
    from minidiff.models.dit import DiT
    from minidiff.recipes import DIT_DIGITS
    from minidiff.train import train
    from minidiff.utils import seed_everything

    what, train_over, model_over = DIT_VARIANTS[variant]
    cfg = dataclasses.replace(DIT_DIGITS["train"], max_minutes=None, seed=seed, **train_over)
    cfg = dataclasses.replace(cfg, steps=PROJECT_DIT_IMAGES // cfg.batch_size)
    seed_everything(seed)
    model = DiT(dataclasses.replace(DIT_DIGITS["dit"], **model_over))
    loss = flow_loss_fn(10, DIT_DIGITS["label_dropout"], DIT_DIGITS["logit_normal"])
    t0 = time.perf_counter()
    result = train(model, loss, load_digits(16, split="train"), cfg, progress=False)
    seconds = time.perf_counter() - t0
    scores = evaluate_dit(result.ema.eval(), verbose=False)
    return {"project": "dit", "variant": variant, "what": what, "train_seed": seed, "train_steps": result.step,
            "batch_size": cfg.batch_size, "train_seconds": round(seconds, 1), **scores}


def baseline_t2v(pipe, prompts, seed):
    """The pipeline as it is, with 3 Euler steps per pass: 2 x 3 guided steps = 12 evaluations per video."""
    return pipe(prompts, steps=3, seed=seed)


def reference_t2v(pipe, prompts, seed):
    """The reference solution of lesson 08's project (the same code as the lesson's): the first frame in 4 steps of
    guidance 4 (8 evaluations), the video in 4 unguided steps (4 evaluations)."""
    from minidiff.flow import euler_sample
    from minidiff.models.mmdit import i2v_condition

    shape = pipe.latent_shape(len(prompts))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(pipe.device)
    txt, y_vec = pipe.encode_prompts(prompts)
    cond = {"txt": txt, "y_vec": y_vec}
    first = euler_sample(pipe.guided_model(4.0), (*shape[:2], 1, *shape[3:]), cond=cond, noise=noise[:, :, :1],
                         steps=4, shift=pipe.shift, device=pipe.device, progress=False)
    cond["cond"] = i2v_condition(first, shape[2])
    x = euler_sample(pipe.mmdit, shape, cond=cond, noise=noise, steps=4, shift=pipe.shift, device=pipe.device,
                     progress=False)
    x[:, :, :1] = first
    return pipe.decode(x)


T2V_VARIANTS = {"baseline": ("the pipeline as it is, 3 steps per pass (guidance 7)", baseline_t2v),
                "reference": ("first frame: 4 steps, guidance 4; video: 4 unguided steps", reference_t2v)}


def run_t2v(variant: str, seed: int) -> dict:
    from minidiff.exercises.projects import evaluate_t2v_sampler

    what, fn = T2V_VARIANTS[variant]
    t0 = time.perf_counter()
    scores = evaluate_t2v_sampler(fn, seed=seed)
    return {"project": "t2v", "variant": variant, "what": what, "seed": seed, **scores,
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("project", choices=["dit", "t2v"])
    p.add_argument("--variants", default="baseline,cosine")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    variants = list(T2V_VARIANTS) if a.project == "t2v" else a.variants.split(",")
    for variant in variants:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            rec = run_dit(variant, seed) if a.project == "dit" else run_t2v(variant, seed)
            rec.update(threads=a.threads, date=datetime.date.today().isoformat())
            print(rec, flush=True)
            append_records("projects", [rec])


if __name__ == "__main__":
    main()
