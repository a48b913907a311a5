"""Open-ended projects (the end of lessons 05 and 08): improve a model on a fixed budget, graded by a measured bar.

A project check calls the learner's recipe with the budget, checks that the run kept to it (training images seen,
parameters), samples the trained model and compares the judge's score with a bar set by `benchmarks/projects.py`:
above what the lesson's own recipe reaches on the same budget, below what a measured improvement reaches (the
records are in benchmarks/results/projects.json). Lesson 05's project trains: in fast mode (MINIDIFF_FAST=1, the
test suite and the default grader) its budget is cut to a few steps, so the run's shape and budget are checked and
the bar is not (it could not be met); `python -m minidiff.exercises grade --full` grades against it. Lesson 08's
project only samples, and is graded against its bar in both modes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..train import TrainResult
from ..utils import fast_mode
from ._common import CheckFailed, as_tensor, call, ok

PROJECT_DIT_IMAGES = 12_800  # training images: e.g. 800 steps of batch 16 (lesson 05 runs in 114 s, this included)
PROJECT_DIT_MAX_PARAMS = 2_000_000
PROJECT_DIT_BAR = 0.75  # judge's class accuracy, 500 samples; see benchmarks/results/projects.json
PROJECT_DIT_SAMPLES, PROJECT_DIT_STEPS = 500, 20
FAST_IMAGES = 160  # the fast mode's budget (10 steps of 16): enough to run the recipe's code, not to learn


def evaluate_dit(model: torch.nn.Module, n: int = PROJECT_DIT_SAMPLES, steps: int = PROJECT_DIT_STEPS, seed: int = 0,
                 verbose: bool = True) -> dict:
    """The project's score: n class-balanced samples (20 Euler steps, no guidance, fixed noise), judged by the
    shipped digit classifier: {"class_accuracy", "frechet", "n_samples"}."""
    from ..eval import evaluate_digits
    from ..flow import euler_sample
    from ..pretrained import load_pretrained

    if isinstance(n, bool) or not isinstance(n, int) or n < 10 or n % 10:
        raise ValueError(f"n must be a positive multiple of 10 (class-balanced samples), got {n!r}")
    params = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    if params is None:
        raise ValueError(f"model must be a torch.nn.Module with parameters, got {type(model).__name__}")
    judge, _ = load_pretrained("digit-classifier")
    device = params.device
    labels = torch.arange(10).repeat_interleave(n // 10)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(labels), 1, 16, 16), generator=g)
    with torch.no_grad():
        x = euler_sample(model.eval(), noise.shape, steps=steps, cond={"y": labels.to(device)},
                         noise=noise.to(device), device=device, progress=verbose).clamp(-1, 1).cpu()
    scores = evaluate_digits(judge, x, labels)
    return {"class_accuracy": round(scores["class_accuracy"], 4), "frechet": round(scores["frechet"], 2),
            "n_samples": len(labels)}


def _trained(out: object, name: str, images: int, max_params: int) -> torch.nn.Module:
    """The EMA model of the learner's TrainResult, after checking the budget."""
    if not isinstance(out, TrainResult):
        raise CheckFailed(f"{name} should return the TrainResult of minidiff.train.train (it records the images "
                          f"seen), got {type(out).__name__} {repr(out)[:60]}")
    if not isinstance(out.ema, torch.nn.Module):
        raise CheckFailed(f"{name}: the TrainResult's ema is {type(out.ema).__name__}, not a model")
    params = sum(p.numel() for p in out.ema.parameters())
    if params > max_params:
        raise CheckFailed(f"{name}: the model has {params:,} parameters, over the project's {max_params:,}. Hint: a "
                          "larger model is not the point; make better use of the same budget.")
    if out.images_seen <= 0:
        raise CheckFailed(f"{name}: the run saw no training images (step {out.step}); train before returning")
    if out.images_seen > images:
        raise CheckFailed(f"{name}: the run saw {out.images_seen:,} training images, over the budget of {images:,} "
                          "(steps x batch size). Hint: read the budget from the argument and set steps = budget // "
                          "batch_size.")
    return out.ema


def check_project_dit(fn: Callable) -> None:
    """fn(images) -> TrainResult: a class-conditional DiT (or any model with the DiT's interface) trained from
    scratch on the digits within `images` training images and PROJECT_DIT_MAX_PARAMS parameters; graded by the
    judge's accuracy on its samples against PROJECT_DIT_BAR."""
    name = "project_dit"
    images = FAST_IMAGES if fast_mode() else PROJECT_DIT_IMAGES
    model = _trained(call(fn, name, images), name, images, PROJECT_DIT_MAX_PARAMS)
    if fast_mode():
        print(f"⏭ {name}: the recipe ran within a fast-mode budget of {images} images; not graded against the bar "
              f"in fast mode (grade with --full)")
        return
    scores = evaluate_dit(model, verbose=False)
    acc = scores["class_accuracy"]
    if acc < PROJECT_DIT_BAR:
        raise CheckFailed(f"{name}: accuracy {acc:.3f} on {scores['n_samples']} samples (Fréchet "
                          f"{scores['frechet']:.1f}) is below the bar {PROJECT_DIT_BAR:.2f}. Hint: with a short budget "
                          "every step must count: the learning-rate schedule, the EMA's horizon, the tokens per image.")
    ok(name, f"accuracy {acc:.3f} ≥ bar {PROJECT_DIT_BAR:.2f} on {scores['n_samples']} samples (Fréchet "
             f"{scores['frechet']:.1f}), within {images:,} training images")


PROJECT_T2V_EVALS = 12  # denoiser evaluations per video (a row of a batch counts one; a guided step costs 2)
PROJECT_T2V_BAR = 0.80  # all three attributes right, over the 230 training captions; benchmarks/results/projects.json


class _Counted(torch.nn.Module):
    """A denoiser that counts its evaluations: one per row of every batch it is called on."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.rows, self.limit = model, 0, None

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.rows += x.shape[0]
        if self.limit is not None and self.rows > self.limit:  # stop at once: no need to finish an over-budget run
            raise RuntimeError("over the evaluation budget")
        return self.model(x, *args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)  # config and the rest of the MMDiT's interface


def evaluate_t2v_sampler(fn: Callable, pipe=None, judge=None, seed: int = 0, name: str = "sampler",
                         budget: float | None = None) -> dict:
    """Prompt adherence of `fn(pipe, prompts, seed) -> videos` over the 230 training captions (the video judge), with
    the denoiser evaluations per video it used (counted on the pipeline's MMDiT). With a `budget` (evaluations per
    video) a sampler that goes over it is stopped at once with CheckFailed."""
    import dataclasses

    from ..eval import prompt_adherence
    from ..pipeline import TextToVideo
    from ..pretrained import load_pretrained

    pipe = pipe or TextToVideo.from_pretrained()
    judge = judge or load_pretrained("digit-classifier")[0]
    counted = _Counted(pipe.mmdit)
    probe = dataclasses.replace(pipe, mmdit=counted)
    shape = (3, pipe.frames, pipe.height, pipe.width)
    evals = []

    def generate(prompts, steps=None, cfg_scale=None, seed=0):
        counted.rows = 0
        counted.limit = None if budget is None else budget * len(prompts)
        try:
            with torch.no_grad():
                videos = call(fn, name, probe, list(prompts), seed)
        except CheckFailed:
            if counted.limit is not None and counted.rows > counted.limit:
                raise CheckFailed(f"{name}: more than {budget:g} denoiser evaluations per video, over the budget of "
                                  f"{budget:g} (every row of every batch counts: a guided step costs 2, the prompt "
                                  "and the empty caption)") from None
            raise
        evals.append(counted.rows / len(prompts))
        return as_tensor(videos, f"{name}(pipe, {len(prompts)} prompts, seed)", (len(prompts), *shape)).float()

    scores = prompt_adherence(generate, judge, "train", seed=seed)
    return {k: scores[k] for k in ("digit", "colour", "direction", "all_three", "n_videos", "std_error")} | {
        "evals_per_video": round(max(evals), 2)}


def check_project_fast_t2v(fn: Callable) -> None:
    """fn(pipe, prompts, seed) -> videos (B, 3, 9, 32, 32) in [-1, 1] from the shipped text-to-video pipeline with at
    most PROJECT_T2V_EVALS denoiser evaluations per video; graded by prompt adherence (all three attributes) over
    the 230 training captions against PROJECT_T2V_BAR."""
    name = "project_fast_t2v"
    r = evaluate_t2v_sampler(fn, name=name, budget=PROJECT_T2V_EVALS)
    if r["all_three"] < PROJECT_T2V_BAR:
        raise CheckFailed(f"{name}: all three right in {r['all_three']:.3f} of {r['n_videos']} videos (digit "
                          f"{r['digit']:.2f}, colour {r['colour']:.2f}, direction {r['direction']:.2f}), below the bar "
                          f"{PROJECT_T2V_BAR:.2f}. Hint: look at which attribute fails and at which step it is "
                          "decided; a large step amplifies whatever guidance adds.")
    ok(name, f"all three right in {r['all_three']:.3f} of {r['n_videos']} videos ≥ bar {PROJECT_T2V_BAR:.2f} (digit "
             f"{r['digit']:.2f}, colour {r['colour']:.2f}, direction {r['direction']:.2f}) with "
             f"{r['evals_per_video']:g} evaluations per video")
