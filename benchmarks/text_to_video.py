"""Lesson 08's text-to-video MMDiT, measured: prompt adherence, its sensitivity to steps and guidance, what each part
buys (ablations at equal training minutes), where digit identity is lost, and where the training time goes.

usage: python benchmarks/text_to_video.py [adherence] [steps] [cfg] [digit-loss] [text-features] [throughput]
                                          [ablations]
                                          [--samples 2] [--threads 2] [--ablation-minutes 10] [--record-in-card]
Appends to benchmarks/results/text_to_video.json, one record per measurement, each with "part", "threads", "date":
  adherence: per split ("train": the 230 training combinations, "heldout": the 10 held-out ones), every caption
    `--samples` times (seeds 0, 1, ...), 20 Euler steps and the card's guidance: {"split", "digit", "colour",
    "direction", "all_three", "n_videos", "std_error" (binomial, of all_three), "seconds_per_video",
    "train_minutes", "train_steps", "train_threads"}; per-digit accuracy in "digit_by_class", the 10 x 10 digit
    confusion (rows: asked for, columns: read) in "confusion", the share read with confidence >= 0.9 in "confident"
  steps: the same on the training split for 5, 10, 20, 50 steps (one sample per caption)
  cfg: the same for guidance scales 1, 2, 4, 7
  digit-loss: where digit identity is lost, on 230 training-split videos: the judge on the real videos, on their VAE
    reconstructions, and on videos regenerated from the real latent noised to t (0.2 .. 1.0; t = 1 is pure noise,
    i.e. generation from scratch), with the true caption (for a text -> image -> video model: the first latent frame
    regenerated from its noised self, then the video sampled from it); also the digit accuracy of each frame judged
    alone ("digit_by_frame")
  throughput: model FLOPs per training step (torch's FlopCounterMode), seconds per step, the achieved GFLOP/s next to
    the machine's dense 2048x2048 matmul in fp32 and bf16 measured in the same run, the time of one step by kind of
    operation (matmul, attention, elementwise), and one step with bf16 autocast
  text-features: how much of the variance of the frozen text encoder's outputs over the 240 captions each attribute
    explains (between-class sum of squares / total), for txt at the digit's position and for all of txt; and
    eval.text_probe (each attribute at its word's position and in y_vec: variance share and a leave-one-context-out
    linear probe). --encoder-root DIR measures another encoder (e.g. an earlier commit's, checked out into DIR)
  swap: the swapped-caption check (eval.swapped_captions): 24 noises, each sampled under the ten captions that
    differ only in the digit: accuracy, confusion, distinct digits per noise
  ablations: the recipe trained for --ablation-minutes (same data and seed; each variant's step is timed first and its
    cosine schedule set to the steps that fit the minutes) as is ("baseline", twice: seeds 0 and 1 give the
    run-to-run spread) and with one part removed: no pooled text in vec ("no-y_vec"), no RoPE
    ("no-rope"), double-stream blocks only ("double-only", 4 + 0 instead of 2 + 2); adherence on the training split
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import sys
import time

import torch
from _results import append_records

STEPS = (5, 10, 20, 50)
CFG = (1.0, 2.0, 4.0, 7.0, 10.0)
NOISE_LEVELS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)


def _stamp(rec: dict, threads: int) -> dict:
    rec.update(threads=threads, date=datetime.date.today().isoformat())
    print(json.dumps(rec), flush=True)
    append_records("text_to_video", [rec])
    return rec


def _pipe():
    from minidiff.pipeline import TextToVideo

    return TextToVideo.from_pretrained("t2v-mmdit", device="cpu")


def _adherence(pipe, judge, split: str, samples: int, steps: int | None = None, cfg: float | None = None) -> dict:
    """eval.prompt_adherence `samples` times (seeds 0, 1000, ...), pooled: every split has the same captions in each
    sample, so the pooled accuracies are the means."""
    from minidiff.eval import prompt_adherence

    runs = [prompt_adherence(pipe, judge, split, steps=steps, cfg_scale=cfg, seed=1000 * s) for s in range(samples)]
    n = sum(r["n_videos"] for r in runs)
    pooled = {k: round(sum(r[k] for r in runs) / samples, 4) for k in ("digit", "colour", "direction", "all_three")}
    p = pooled["all_three"]
    by_class = {k: round(sum(r["digit_by_class"][k] for r in runs) / samples, 3) for k in runs[0]["digit_by_class"]}
    confusion = [[sum(r["confusion"][i][j] for r in runs) for j in range(10)] for i in range(10)]
    return {**pooled, "n_videos": n, "std_error": round(math.sqrt(max(p * (1 - p), 1e-12) / n), 4),
            "seconds_per_video": round(sum(r["seconds_per_video"] for r in runs) / samples, 4),
            "confident": round(sum(r["confident"] for r in runs) / samples, 4),
            "digit_by_class": by_class, "confusion": confusion}


def measure_adherence(judge, samples: int, threads: int, record_in_card: bool) -> None:
    from minidiff.pretrained import load_card, update_card

    pipe = _pipe()
    card = load_card("t2v-mmdit")
    metrics = {}
    for split in ("train", "heldout"):
        r = _adherence(pipe, judge, split, samples)
        rec = _stamp({"part": "adherence", "split": split, "steps": pipe.steps, "cfg_scale": pipe.cfg_scale, **r,
                      "train_minutes": card["train_minutes"], "train_steps": card["train_steps"],
                      "train_threads": card["threads"]}, threads)
        metrics[split] = {k: rec[k] for k in ("digit", "colour", "direction", "all_three", "n_videos", "std_error",
                                              "seconds_per_video")}
    if record_in_card:
        metrics["source"] = (f"benchmarks/text_to_video.py adherence: every caption of each split {samples} times, "
                             f"{pipe.steps} Euler steps, guidance {pipe.cfg_scale}, {datetime.date.today()}")
        update_card("t2v-mmdit", {"metrics": metrics})


def measure_steps(judge, threads: int) -> None:
    pipe = _pipe()
    for steps in STEPS:
        _stamp({"part": "steps", "split": "train", "steps": steps, "cfg_scale": pipe.cfg_scale,
                **_adherence(pipe, judge, "train", 1, steps=steps)}, threads)


def measure_cfg(judge, threads: int) -> None:
    pipe = _pipe()
    for cfg in CFG:
        _stamp({"part": "cfg", "split": "train", "steps": pipe.steps, "cfg_scale": cfg,
                **_adherence(pipe, judge, "train", 1, cfg=cfg)}, threads)


@torch.no_grad()
def measure_digit_loss(judge, threads: int) -> None:
    """Judge real videos, their reconstructions, and regenerations from the real latent noised to t."""
    from minidiff.data import caption_index, caption_table, moving_digits
    from minidiff.eval import judge_videos
    from minidiff.flow import euler_sample, euler_timesteps
    from minidiff.models.vae import encode_videos

    pipe = _pipe()
    md = moving_digits(230, seed=77, split="train")
    target = (md.digits, md.colours, md.directions)
    latents = encode_videos(pipe.vae, md.videos)
    prompts = [caption_table()[i] for i in caption_index(*target).tolist()]
    rows = {"real videos": md.videos, "VAE reconstructions": pipe.decode(latents)}
    txt, y_vec = pipe.encode_prompts(prompts)
    model = pipe.guided_model(pipe.cfg_scale)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5))
    grid = euler_timesteps(pipe.steps, pipe.shift)
    for t_start in NOISE_LEVELS:  # start the same sampler at the grid point nearest t_start, from the real latent
        i0 = int((grid - t_start).abs().argmin())
        t0 = float(grid[i0])
        if pipe.route == "t2v":
            x = euler_sample(model, latents.shape, cond={"txt": txt, "y_vec": y_vec},
                             noise=(1 - t0) * latents + t0 * noise, timesteps=grid[i0:], progress=False)
        else:  # text -> image -> video: regenerate the first frame from the noised real one, then the video from it
            first = euler_sample(model, latents[:, :, :1].shape, cond={"txt": txt, "y_vec": y_vec},
                                 noise=(1 - t0) * latents[:, :, :1] + t0 * noise[:, :, :1], timesteps=grid[i0:],
                                 progress=False)
            x = pipe.sample_latents(prompts, seed=5, first_frame=first)
        rows[f"regenerated from t={t0:.2f}"] = pipe.decode(x)
    for name, videos in rows.items():
        acc = judge_videos(videos, judge, *target).accuracy
        # each frame judged on its own: is the glyph lost in every frame, or only in the later ones?
        acc["digit_by_frame"] = [round(judge_videos(videos[:, :, k:k + 1], judge, *target).accuracy["digit"], 4)
                                 for k in range(videos.shape[2])]
        _stamp({"part": "digit-loss", "source": name, **acc, "n_videos": len(md), "steps": pipe.steps,
                "cfg_scale": pipe.cfg_scale}, threads)


def measure_swap(judge, threads: int, n_noises: int = 24) -> None:
    """eval.swapped_captions on the shipped model: the same noise under the ten captions that differ only in the
    digit."""
    from minidiff.eval import swapped_captions

    t0 = time.perf_counter()
    r = swapped_captions(_pipe(), judge, n_noises)
    _stamp({"part": "swap", **r, "seconds": round(time.perf_counter() - t0, 1)}, threads)


@torch.no_grad()
def measure_text_features(threads: int, root: str | None = None) -> None:
    """`eval.text_probe` of a text encoder's outputs for the 240 captions (the shipped one, or the one in `root`),
    plus the variance shares of the digit's position and of all of txt."""
    from minidiff.data import caption_attributes, caption_table
    from minidiff.eval import text_probe, variance_share
    from minidiff.pretrained import ROOT, load_pretrained

    clip, card = load_pretrained("text-encoder", root or ROOT)
    txt, y_vec = clip.text_encoder(caption_table())
    attrs = dict(zip(("digit", "colour", "direction"), caption_attributes(torch.arange(240)), strict=True))
    encoder = {"encoder": card.get("commit", "?"), "word_loss_weight": card["config"].get("word_loss_weight", 0.0)}
    for name, x in (("txt at the digit's position", txt[:, 3]), ("txt, all positions", txt.flatten(1))):
        _stamp({"part": "text-features", "source": name, **encoder, "n_captions": 240,
                "variance_share": {k: round(variance_share(x, lab), 3) for k, lab in attrs.items()}}, threads)
    _stamp({"part": "text-features", "source": "text_probe", **encoder, "n_captions": 240, **text_probe(txt, y_vec)},
           threads)


def _matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def measure_throughput(threads: int) -> None:
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    from minidiff.models.mmdit import MMDiT
    from minidiff.recipes import T2V_MMDIT

    cfg = T2V_MMDIT["mmdit"]
    b = T2V_MMDIT["train"].batch_size
    model = MMDiT(cfg)
    for p in model.parameters():  # not the zero init: every branch computes something
        torch.nn.init.normal_(p, std=0.02)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(b, 4, 3, 16, 16, generator=g), torch.rand(b, generator=g)
    txt, y_vec = torch.randn(b, 8, cfg.context_in_dim, generator=g), torch.randn(b, cfg.vec_in_dim, generator=g)

    def step(bf16: bool = False) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = (model(x, t, txt, y_vec).float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    timings = {}
    for bf16 in (False, True):
        step(bf16)
        t0 = time.perf_counter()
        n = 3 if bf16 else 10
        for _ in range(n):
            step(bf16)
        timings[bf16] = (time.perf_counter() - t0) / n
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    kinds = {"matmul": 0.0, "attention": 0.0, "elementwise and other": 0.0}
    for ev in prof.key_averages():
        name = ev.key
        kind = ("attention" if "scaled_dot_product" in name else
                "matmul" if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul") else
                "elementwise and other")
        kinds[kind] += ev.self_cpu_time_total
    total = sum(kinds.values())
    _stamp({"part": "throughput", "batch_size": b, "params": sum(p.numel() for p in model.parameters()),
            "tokens_per_sample": 3 * 8 * 8 + 8, "flops_per_step": flops,
            "seconds_per_step_fp32": round(timings[False], 4),
            "seconds_per_step_bf16_autocast": round(timings[True], 4),
            "achieved_gflops_fp32": round(flops / timings[False] / 1e9, 1),
            "matmul_peak_gflops_fp32": round(_matmul_gflops(torch.float32), 1),
            "matmul_peak_gflops_bf16": round(_matmul_gflops(torch.bfloat16, repeats=2), 1),
            "time_share": {k: round(v / total, 3) for k, v in kinds.items()},
            "bf16_is_fast_here": __import__("minidiff").bf16_is_fast("cpu")}, threads)


def _seconds_per_step(cfg, batch_size: int, n: int = 15) -> float:
    """Time n AdamW training steps of a fresh MMDiT(cfg) on random inputs (after 3 warm-up steps)."""
    from minidiff.models.mmdit import MMDiT

    torch.manual_seed(0)
    model = MMDiT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, t = torch.randn(batch_size, 4, 3, 16, 16), torch.rand(batch_size)
    txt, y_vec = torch.randn(batch_size, 8, cfg.context_in_dim), torch.randn(batch_size, cfg.vec_in_dim)
    for i in range(n + 3):
        if i == 3:
            t0 = time.perf_counter()
        loss = (model(x, t, txt, y_vec) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / n


def measure_ablations(judge, minutes: float, threads: int) -> None:
    from minidiff.pipeline import TextToVideo
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes import T2V_MMDIT, t2v_mmdit

    base = T2V_MMDIT["mmdit"]
    variants = {"baseline": (base, 0), "baseline seed 1": (base, 1),
                "no-y_vec": (dataclasses.replace(base, use_y_vec=False), 0),
                "no-rope": (dataclasses.replace(base, use_rope=False), 0),
                "double-only": (dataclasses.replace(base, depth=base.depth + base.depth_single_blocks,
                                                    depth_single_blocks=0), 0)}
    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    for name, (cfg, seed) in variants.items():
        # equal minutes, and a cosine schedule that ends when the minutes do: time this variant's step first, then
        # train for the steps that fit (the time limit, 10 % above, only guards against a slower machine)
        pace = _seconds_per_step(cfg, T2V_MMDIT["train"].batch_size)
        steps = int(minutes * 60 / pace)
        train_cfg = dataclasses.replace(T2V_MMDIT["train"], seed=seed, steps=steps, max_minutes=1.1 * minutes)
        run = t2v_mmdit(config=cfg, train_config=train_cfg, progress=False, evaluate=False)
        result, p = run.result, run.card["pipeline"]
        pipe = TextToVideo(result.ema.eval(), vae, clip.text_encoder.eval(), frames=p["frames"], height=p["height"],
                           width=p["width"], shift=p["shift"], steps=p["steps"], cfg_scale=p["cfg_scale"])
        _stamp({"part": "ablations", "variant": name, "train_seed": seed, "train_minutes": round(result.minutes, 2),
                "train_steps": result.step, "scheduled_steps": steps,
                "timed_seconds_per_step": round(pace, 4), "params": sum(q.numel() for q in result.ema.parameters()),
                "split": "train", **_adherence(pipe, judge, "train", 1)}, threads)


def _curve_point(ema, vae, text, judge, stage: str, step: int, heldout_samples: int, shift: float) -> list[dict]:
    """Adherence of the model as it is at `step` of `stage`, one sample per training caption (seed 1),
    `heldout_samples` per held-out one: in a stage of stills alone ("stills"), stills (one latent frame) judged for
    digit and colour; in the main stage, videos judged for all three, and for a model that goes text -> image ->
    video also its stills alone (split "train-stills")."""
    from minidiff.eval import prompt_adherence
    from minidiff.pipeline import TextToVideo

    def record(pipe, split, samples, videos):
        r = prompt_adherence(pipe, judge, split.removesuffix("-stills"), samples_per_prompt=samples, seed=1)
        key = "all_three" if videos else "digit"
        p = r[key]
        return {"stage": stage, "step": step, "split": split, "digit": r["digit"], "colour": r["colour"],
                "direction": r["direction"] if videos else None, "all_three": r["all_three"] if videos else None,
                "confident": r["confident"], "confusion": r["confusion"], "n_videos": r["n_videos"],
                "std_error": round(math.sqrt(max(p * (1 - p), 1e-12) / r["n_videos"]), 4), "of": key}

    video = TextToVideo(ema.eval(), vae, text, frames=9, height=32, width=32, shift=shift, steps=20, cfg_scale=7.0)
    still = dataclasses.replace(video, frames=1)
    if stage == "stills":
        return [record(still, split, n, False) for split, n in (("train", 1), ("heldout", heldout_samples))]
    out = [record(video, split, n, True) for split, n in (("train", 1), ("heldout", heldout_samples))]
    if video.route == "t2i2v":
        out.append(record(still, "train-stills", 1, False))
    return out


RECIPES = {
    "new": "the shipped recipe: stills (t2i) and image-to-video (i2v) mixed, 10,000 steps; sampled text -> image -> "
           "video",
    "old": "the first recipe: videos only (t2v), 5,000 steps at lr 3e-3, shift 1.56, no REPA",
    "staged-t2v": "the recipe before the shipped one: 7,000 steps of stills, then 1,500 of whole videos with nothing "
                  "given (t2v) at lr 1e-3; shift 3 and REPA as new",
    "oracle": "the new recipe with txt / y_vec from recipes.oracle_text_table (a perfect text encoder)",
}


def recipe_overrides(recipe: str) -> dict:
    """recipes.t2v_mmdit keyword arguments for each of RECIPES."""
    from minidiff import recipes

    r = recipes.T2V_MMDIT
    t2v_only = dataclasses.replace(r["mmdit"], cond_embed=False)
    if recipe == "old":
        return {"repa_weight": 0.0, "shift": 1.55885, "config": t2v_only, "tasks": {"t2v": 1.0},
                "train_config": dataclasses.replace(r["train"], steps=5000, lr=3e-3)}
    if recipe == "staged-t2v":
        return {"config": t2v_only, "tasks": {"t2v": 1.0},
                "image_train_config": dataclasses.replace(r["train"], steps=7000, lr=3e-3),
                "train_config": dataclasses.replace(r["train"], steps=1500, lr=1e-3)}
    if recipe == "oracle":
        from minidiff.data import caption_table

        return {"text_features": recipes.oracle_text_table(caption_table() + [""])}
    return {}


def measure_curve(judge, threads: int, recipe: str, points: int, out_dir: str | None, heldout_samples: int,
                  seed: int | None = None) -> None:
    """Train one of RECIPES from scratch and measure adherence `points` times in each stage; `seed` (default the
    recipe's) trains it again from another seed, for the run-to-run spread. With `out_dir`, the trained model and its
    card are written there as the CLI does (then `python -m minidiff.recipes`' install can ship them)."""
    from minidiff import recipes
    from minidiff.pretrained import load_pretrained, save_pretrained

    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    r = recipes.T2V_MMDIT
    kw = recipe_overrides(recipe)
    if seed is not None:
        for key in ("train_config", "image_train_config"):
            if key == "train_config" or kw.get(key) is not None:
                kw[key] = dataclasses.replace(kw.get(key, r["train"]), seed=seed)
    train_seed = kw.get("train_config", r["train"]).seed
    text = clip.text_encoder.eval()
    if recipe == "oracle":

        class OracleText(torch.nn.Module):
            """The real encoder's tokenizer (the pipeline checks prompts with it), the oracle's features."""

            def __init__(self, real: torch.nn.Module) -> None:
                super().__init__()
                self.tokenizer, self.config = real.tokenizer, real.config

            def forward(self, prompts):
                return recipes.oracle_text_table(list(prompts))

        text = OracleText(text)
    stage_steps = {"main": kw.get("train_config", r["train"]).steps}
    if kw.get("image_train_config") is not None:
        stage_steps["stills"] = kw["image_train_config"].steps
    wanted = {k: {round(n * (i + 1) / points) for i in range(points)} for k, n in stage_steps.items() if n}
    shift = kw.get("shift", r["shift"])
    every = math.gcd(*[s for v in wanted.values() for s in v])
    spent = [0.0]

    def callback(stage: str, step: int, ema) -> None:
        if step in wanted.get(stage, ()):
            t0 = time.perf_counter()
            for rec in _curve_point(ema, vae, text, judge, stage, step, heldout_samples, shift):
                _stamp({"part": "curve", "recipe": recipe, "train_seed": train_seed, **rec}, threads)
            spent[0] += time.perf_counter() - t0

    run = recipes.t2v_mmdit(progress=True, evaluate=False, callback=callback, callback_every=every, **kw)
    result = run.result
    _stamp({"part": "curve-run", "recipe": recipe, "train_seed": train_seed, "stages": run.card["stages"],
            "train_minutes": round(result.minutes, 2), "evaluation_minutes": round(spent[0] / 60, 2)}, threads)
    if out_dir is not None:
        save_pretrained("t2v-mmdit", run.model, run.kind, run.card, out_dir)
        print(f"wrote {out_dir}/t2v-mmdit.safetensors and .json")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parts = ["adherence", "steps", "cfg", "digit-loss", "text-features", "throughput", "ablations", "curve", "swap"]
    p.add_argument("parts", nargs="*", default=["adherence"], choices=parts)
    p.add_argument("--samples", type=int, default=2, help="samples per caption for `adherence`")
    p.add_argument("--ablation-minutes", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record-in-card", action="store_true", help="write the adherence figures into the card")
    p.add_argument("--recipe", choices=list(RECIPES), default="new", help="for `curve`: " + "; ".join(
        f"{k}: {v}" for k, v in RECIPES.items()))
    p.add_argument("--points", type=int, default=4, help="curve points per stage")
    p.add_argument("--seed", type=int, default=None, help="for `curve`: train with this seed instead of the recipe's")
    p.add_argument("--heldout-samples", type=int, default=4, help="samples per held-out caption at each curve point")
    p.add_argument("--out", default=None, help="for `curve`: write the trained model and card to this folder")
    p.add_argument("--encoder-root", default=None,
                   help="for `text-features`: a folder holding another text-encoder.json/.safetensors to measure")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    if "adherence" in a.parts:
        measure_adherence(judge, a.samples, a.threads, a.record_in_card)
    if "steps" in a.parts:
        measure_steps(judge, a.threads)
    if "cfg" in a.parts:
        measure_cfg(judge, a.threads)
    if "digit-loss" in a.parts:
        measure_digit_loss(judge, a.threads)
    if "text-features" in a.parts:
        measure_text_features(a.threads, a.encoder_root)
    if "throughput" in a.parts:
        measure_throughput(a.threads)
    if "ablations" in a.parts:
        measure_ablations(judge, a.ablation_minutes, a.threads)
    if "swap" in a.parts:
        measure_swap(judge, a.threads)
    if "curve" in a.parts:
        measure_curve(judge, a.threads, a.recipe, a.points, a.out, a.heldout_samples, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
