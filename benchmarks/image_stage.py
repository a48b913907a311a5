"""Why the capstone draws the wrong digit, measured where it is cheap: the image stage (each video's first frame).

Every variant trains lesson 08's MMDiT (the recipe's sizes) on 20,000 first frames of training-split videos, with the
shipped text encoder, for --steps steps (batch 16, lr 3e-3, cosine, as the recipe), and is judged at each of --evals
steps: a still for each of the 230 training captions (20 Euler steps, guidance 7), read by the video judge:
digit accuracy with its binomial standard error, and the share of stills whose glyph the judge reads with
probability >= 0.9 whatever the digit ("confident": draws a clear digit, right or wrong).

usage: python benchmarks/image_stage.py [VARIANT ...] [--steps 3000] [--evals 1500,3000] [--threads 1] [--jobs 2]
       python benchmarks/image_stage.py --list
Appends to benchmarks/results/image_stage.json one record per variant and evaluation step:
  {"variant", "what", "step", "digit", "std_error", "colour", "confident", "train_seconds", "threads", "date"}
Variants (one change each against "baseline", the image stage as it was before the adherence work):
  where the glyph sits: "centred" (moved to the canvas centre), "token-grid" (moved to a random place on the 4-pixel
    grid of the tokens); what it is drawn in: "grey" (no tint), "pixels" (the 32x32 frame itself, 4x4-pixel
    patches: the same 64 tokens); the model: "depth-6" (3 + 3 blocks), "heads-8", "rope-theta-100",
    "abs-pos" (DiT's 2-D sin-cos added to the video tokens as well as RoPE, as Open-Sora 1.2's STDiT3 does),
    "conv-mlp" (a 3x3 depthwise convolution inside each double block's video MLP, as SANA's Mix-FFN; 4 + 0 blocks) and
    its control "double-only" (4 + 0 blocks); the text: "oracle-text" (one-hot words, a perfect encoder); the training
    signal: "shift-3", "shift-6" (time shift of training and sampling), "repa" (shift 3 + REPA, the recipe's),
    "token-labels" (shift 3 + a per-token head trained on the generator's glyph labels, the privileged version of
    REPA); the text encoder's words: "repa-clip-text" (as "repa", the text from the encoder retrained without its
    word loss, CLIP's loss alone).
Timings in the records are only comparable between runs made side by side (--jobs 2 shares the two cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from _results import append_records

N_IMAGES = 20_000
DATA_SEED = 10  # the recipe's videos

VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("first frames, shift 1, no REPA, the shipped text encoder", {}),
    "centred": ("every glyph moved to the canvas centre", {"place": "centre"}),
    "token-grid": ("every glyph moved to a random place on the tokens' 4-pixel grid", {"place": "grid4"}),
    "grey": ("no tint: the glyph's ink in all three channels", {"tint": "grey"}),
    "pixels": ("the 32x32 frame itself with 4x4-pixel patches (64 tokens, as the latent)", {"repr": "pixel",
                                                                                          "patch": 4}),
    "depth-6": ("3 double + 3 single blocks instead of 2 + 2", {"double": 3, "single": 3}),
    "heads-8": ("8 heads of 16 instead of 4 of 32", {"heads": 8}),
    "rope-theta-100": ("RoPE base 100 instead of 10,000 (frequencies spread over an 8-token grid)", {"theta": 100}),
    "abs-pos": ("2-D sin-cos positions added to the video tokens, beside RoPE", {"abspos": True}),
    "double-only": ("4 double + 0 single blocks (control of conv-mlp)", {"double": 4, "single": 0}),
    "conv-mlp": ("4 + 0 blocks, a 3x3 depthwise convolution in each video MLP", {"double": 4, "single": 0,
                                                                               "convmlp": True}),
    "oracle-text": ("txt = one-hot words at their positions, y_vec = one-hot attributes", {"oracle": True}),
    "shift-3": ("time shift 3 in training and sampling", {"shift": 3.0}),
    "shift-6": ("time shift 6 in training and sampling", {"shift": 6.0}),
    "repa": ("shift 3 + REPA (weight 0.5, after double block 2, the text encoder's video tower)",
             {"shift": 3.0, "repa": 0.5}),
    "repa-clip-text": ("as repa, but txt and y_vec from the text encoder retrained with CLIP's loss alone (no word "
                       "loss; the REPA targets stay the shipped encoder's)", {"shift": 3.0, "repa": 0.5,
                                                                            "text": "clip-only"}),
    "repa-theta-100": ("as repa, with RoPE base 100 instead of 10,000", {"shift": 3.0, "repa": 0.5, "theta": 100}),
    "token-labels": ("shift 3 + a per-token head on the glyph's digit (10 + background) after double block 2, "
                     "weight 0.5", {"shift": 3.0, "labels": 0.5}),
}
DEFAULTS = {"place": "frame", "tint": "colour", "repr": "latent", "patch": 2, "double": 2, "single": 2, "heads": 4,
            "theta": 10_000, "abspos": False, "convmlp": False, "oracle": False, "shift": 1.0, "repa": 0.0,
            "labels": 0.0, "text": "shipped"}


# ------------------------------------------------------------------------------------------------------ data

def first_frames(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first frames (n, 3, 1, 32, 32) of the recipe's training videos and their caption indices."""
    from minidiff.data import caption_index, moving_digits

    md = moving_digits(n, seed=DATA_SEED, split="train")
    return md.videos[:, :, :1].contiguous(), caption_index(md.digits, md.colours, md.directions)


def replace_glyphs(frames: torch.Tensor, where: str, seed: int = 0) -> torch.Tensor:
    """Move each frame's glyph (its ink's bounding box) to the canvas centre ("centre") or to a random place on a
    4-pixel grid ("grid4"), on a black canvas."""
    n, _, _, size, _ = frames.shape
    ink = frames.amax(1)[:, 0] > -1  # (n, H, W)
    out = torch.full_like(frames, -1.0)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        rows, cols = ink[i].any(1).nonzero().squeeze(1), ink[i].any(0).nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        h, w = y1 - y0, x1 - x0
        if where == "centre":
            oy, ox = (size - h) // 2, (size - w) // 2
        else:
            oy = int(torch.randint((size - h) // 4 + 1, (1,), generator=g)) * 4
            ox = int(torch.randint((size - w) // 4 + 1, (1,), generator=g)) * 4
        out[i, :, :, oy:oy + h, ox:ox + w] = frames[i, :, :, y0:y1, x0:x1]
    return out


def token_labels(frames: torch.Tensor, grid: int, digits: torch.Tensor) -> torch.Tensor:
    """(n, grid * grid) per-token labels: the frame's digit where the token's patch holds ink, 10 elsewhere."""
    ink = (frames.amax(1)[:, 0] > -0.5).float()[:, None]  # (n, 1, H, W)
    has = F.max_pool2d(ink, frames.shape[-1] // grid)[:, 0].flatten(1) > 0
    return torch.where(has, digits[:, None], torch.full_like(digits[:, None], 10))


class PixelCodec(nn.Module):
    """Stands in for the VAE when the model works on pixels: latents are the frames themselves."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("C", (), {"scaling_factor": 1.0, "latent_channels": 3})()
        self.dummy = nn.Parameter(torch.zeros(()))

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return 3, frames, height, width

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


class OracleText(nn.Module):
    """A 'text encoder' that returns recipes.oracle_text_table for the prompts (keeps the real one's tokenizer, so
    the pipeline's prompt checks work)."""

    def __init__(self, real: nn.Module) -> None:
        super().__init__()
        self.tokenizer, self.config = real.tokenizer, real.config
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from minidiff.recipes import oracle_text_table

        return oracle_text_table(list(prompts))


# ------------------------------------------------------------------------------------------------ model changes

class AbsolutePositions(nn.Module):
    """img_in followed by + DiT's fixed 2-D sin-cos embedding of each token's (row, column)."""

    def __init__(self, img_in: nn.Linear, grid: int) -> None:
        super().__init__()
        from minidiff.models.dit import get_2d_sincos_pos_embed

        self.img_in = img_in
        self.register_buffer("pos", get_2d_sincos_pos_embed(img_in.out_features, grid, grid)[None],
                             persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.img_in(img) + self.pos


class ConvMLP(nn.Module):
    """A block's video MLP with a 3x3 depthwise convolution over the token grid after its first Linear (zero at
    start, so the block starts as the plain MLP): Linear -> + DWConv -> GELU -> Linear."""

    def __init__(self, mlp: nn.Sequential, grid: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = mlp[0], mlp[1], mlp[2]
        width = self.fc1.out_features
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        nn.init.zeros_(self.dw.weight)
        nn.init.zeros_(self.dw.bias)
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)  # (B, N, C) with N = grid * grid (one frame)
        b, n, c = h.shape
        maps = h.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        return self.fc2(self.act(h + self.dw(maps).reshape(b, c, n).transpose(1, 2)))


# ------------------------------------------------------------------------------------------------------ one run

def run_variant(name: str, steps: int, evals: list[int], threads: int, n_images: int = N_IMAGES,
                record: bool = True) -> list[dict]:
    from minidiff import flow
    from minidiff.data import caption_attributes, caption_table
    from minidiff.eval import prompt_adherence
    from minidiff.guidance import drop_labels
    from minidiff.models.mmdit import MMDiT
    from minidiff.models.vae import encode_videos
    from minidiff.pipeline import TextToVideo
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes import T2V_MMDIT, oracle_text_table, t2v_loss_fn, text_table
    from minidiff.train import TrainConfig, train

    torch.set_num_threads(threads)
    what, changes = VARIANTS[name]
    v = {**DEFAULTS, **changes}
    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    judge, _ = load_pretrained("digit-classifier")
    frames, index = first_frames(n_images)
    if v["place"] != "frame":
        frames = replace_glyphs(frames, v["place"])
    if v["tint"] == "grey":
        frames = frames.amax(1, keepdim=True).expand(-1, 3, -1, -1, -1).contiguous()
    codec = PixelCodec() if v["repr"] == "pixel" else vae
    x = frames if v["repr"] == "pixel" else encode_videos(vae, frames)
    prompts = caption_table() + [""]
    text_clip = clip
    if v["text"] == "clip-only":  # the same recipe without the word loss: only the words the denoiser reads change
        from minidiff.recipes import text_encoder

        text_clip = text_encoder(progress=False, word_loss_weight=0.0).model
    txt, vec = oracle_text_table(prompts) if v["oracle"] else text_table(text_clip, prompts)
    p, grid = v["patch"], x.shape[-1] // v["patch"]
    cfg = dataclasses.replace(T2V_MMDIT["mmdit"], in_channels=x.shape[1] * p * p, patch_size=p, num_heads=v["heads"],
                              depth=v["double"], depth_single_blocks=v["single"], theta=v["theta"],
                              axes_dim=(8, 12, 12) if v["heads"] == 4 else (4, 6, 6),
                              repa_dim=64 if v["repa"] or v["labels"] else 0, repa_depth=2 if v["double"] >= 2 else 1)
    if v["labels"]:
        cfg = dataclasses.replace(cfg, repa_dim=11)  # the projector becomes the per-token label head
    torch.manual_seed(0)
    model = MMDiT(cfg)
    if v["abspos"]:
        model.img_in = AbsolutePositions(model.img_in, grid)
    if v["convmlp"]:
        for block in model.double_blocks:
            block.img_mlp = ConvMLP(block.img_mlp, grid)
    encoder = clip.video_encoder.eval().requires_grad_(False) if v["repa"] else None
    base_loss = t2v_loss_fn(txt, vec, len(prompts) - 1, 0.1, v["shift"], True, encoder, v["repa"])
    rows = torch.arange(len(x))
    if v["labels"]:
        labels = token_labels(frames, grid, caption_attributes(index)[0])

        def loss_fn(m, xb, r, g):  # data rows, so the labels of the batch can be looked up
            y = index[r]
            it = drop_labels(y, len(prompts) - 1, 0.1, g)
            t, noise, xt = flow.noised(xb, g, True, v["shift"])
            pred, logits = m(xt, t, txt[it], vec[it], return_repa=True)
            mse = torch.mean((pred - flow.velocity_target(xb, noise)) ** 2)
            return mse + v["labels"] * F.cross_entropy(logits.flatten(0, 1), labels[r].flatten())
        data = (x, rows)
    else:
        loss_fn, data = base_loss, (x, index)
    records = []
    base = T2V_MMDIT["train"]  # batch 16, lr 3e-3, cosine, 100 warm-up steps, EMA 0.995 (the steps are --steps)

    def evaluate(step: int, ema: nn.Module) -> None:
        text = OracleText(clip.text_encoder) if v["oracle"] else text_clip.text_encoder.eval()
        pipe = TextToVideo(ema.eval(), codec, text, frames=1, height=32, width=32, shift=v["shift"], steps=20,
                           cfg_scale=7.0)
        r = prompt_adherence(pipe, judge, "train", seed=1)
        rec = {"variant": name, "what": what, "step": step, "digit": r["digit"],
               "std_error": round(math.sqrt(r["digit"] * (1 - r["digit"]) / r["n_videos"]), 4),
               "colour": r["colour"], "confident": r["confident"], "n_images": r["n_videos"],
               "train_seconds": round(time.perf_counter() - t_start - evaluating[0], 1), "threads": threads,
               "date": datetime.date.today().isoformat()}
        print(json.dumps(rec), flush=True)
        if record:
            append_records("image_stage", [rec])
        records.append(rec)

    evaluating = [0.0]

    def callback(step: int, ema: nn.Module) -> None:
        if step in evals:
            t0 = time.perf_counter()
            evaluate(step, ema)
            evaluating[0] += time.perf_counter() - t0

    tc = TrainConfig(**{**base.__dict__, "steps": steps, "max_minutes": None})
    t_start = time.perf_counter()
    train(model, loss_fn, data, tc, progress=False, callback=callback, callback_every=math.gcd(*evals))
    return records


def _worker(args: tuple) -> list[dict]:
    return run_variant(*args)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("variants", nargs="*", default=list(VARIANTS), help="default: all")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--evals", default="1500,3000", help="the steps at which to judge (comma-separated)")
    p.add_argument("--threads", type=int, default=1, help="threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.add_argument("--images", type=int, default=N_IMAGES, help="training images (a smaller number for a try-out)")
    p.add_argument("--no-record", action="store_true", help="print the records without appending them")
    p.add_argument("--list", action="store_true")
    a = p.parse_args()
    if a.list:
        for k, (what, _) in VARIANTS.items():
            print(f"{k:>15}  {what}")
        return 0
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; --list shows them")
    evals = sorted(int(s) for s in a.evals.split(","))
    if not evals or evals[-1] > a.steps or evals[0] < 1:
        p.error("--evals must be steps between 1 and --steps")
    jobs = [(v, a.steps, evals, a.threads, a.images, not a.no_record) for v in a.variants]
    if a.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(a.jobs) as pool:
            pool.map(_worker, jobs, chunksize=1)
    else:
        for j in jobs:
            _worker(j)
    return 0


if __name__ == "__main__":
    sys.exit(main())
