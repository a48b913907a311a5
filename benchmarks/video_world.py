"""Measurements of the text-to-video world's parts: the video judge, the video VAE, the text encoder (tiny CLIP).

usage: python benchmarks/video_world.py [judge] [video-vae] [text-encoder] [text-encoder-short] [prompt-probes]
                                        [--n 5000] [--seed 100] [--split heldout] [--threads 2] [--record-in-card]
Appends to benchmarks/results/video_world.json:
  judge, per split ("train" / "heldout" combinations): {"component": "judge", "split", "n_videos", "digit",
    "colour", "direction", "all_three", "seconds_per_1000", "generate_seconds_per_1000", "threads", "date"}
  video-vae, on videos of --split (default held-out combinations) reconstructed from their latent means:
    {"component": "video-vae",
    "vae_psnr", "judge_all_three_reconstructions", "judge_per_attribute_reconstructions", "judge_all_three_originals",
    "n_videos", "train_minutes", "train_steps", "threads", "date"}
  text-encoder (the tiny CLIP), per split: {"component": "text-encoder", "split", "retrieval_top1" (the video's own
    caption is the most similar of all 240), "top1_caption_per_attribute", "n_videos", "train_minutes",
    "train_steps", "threads", "date"}
  text-encoder-short: lesson 07's 1-minute run of the same recipe on 2,000 videos: {"component":
    "text-encoder-short", "train_steps", "train_minutes", "retrieval_top1_train", "retrieval_top1_heldout" (500
    videos each), "threads", "date"}
  prompt-probes: what prompts mean to the shipped tiny CLIP, on 240 videos (seed 5, as in lesson 07): per prompt
    {"component": "prompt-probes", "prompt", "matching_videos", "similarity_matching", "similarity_others" (mean cosine
    similarity to the videos that match the prompt's words and to the rest; for "" all videos), "threads", "date"}
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch
from _results import append_records


def measure_vae(judge, n: int, seed: int, threads: int, record_in_card: bool, split: str = "heldout") -> dict:
    from minidiff.data import moving_digits
    from minidiff.eval import judge_videos, psnr
    from minidiff.pretrained import load_pretrained, update_card

    vae, card = load_pretrained("video-vae")
    md = moving_digits(n, seed=seed, split=split)
    with torch.no_grad():
        recon = torch.cat([vae.decode(vae.encode(v)[0]) for v in md.videos.split(100)]).clamp(-1, 1)
    on_recon = judge_videos(recon, judge, md.digits, md.colours, md.directions).accuracy
    on_real = judge_videos(md.videos, judge, md.digits, md.colours, md.directions).accuracy
    rec = {"component": "video-vae", "vae_psnr": round(psnr(recon, md.videos), 2),
           "judge_all_three_reconstructions": on_recon["all_three"],
           "judge_per_attribute_reconstructions": {k: on_recon[k] for k in ("digit", "colour", "direction")},
           "judge_all_three_originals": on_real["all_three"], "n_videos": n, "split": split,
           "train_minutes": card["train_minutes"], "train_steps": card["train_steps"], "threads": threads,
           "date": datetime.date.today().isoformat()}
    print(json.dumps(rec))
    append_records("video_world", [rec])
    if record_in_card and split == "heldout":
        update_card("video-vae", {"metrics": {k: rec[k] for k in ("vae_psnr", "judge_all_three_reconstructions",
                                                                     "judge_per_attribute_reconstructions",
                                                                     "n_videos", "split")}
                                  | {"source": f"benchmarks/video_world.py video-vae (seed {seed}), {rec['date']}"}})
    return rec


def measure_text_encoder(n: int, seed: int, threads: int) -> None:
    from minidiff.data import caption_attributes, caption_index, caption_table, moving_digits
    from minidiff.eval import retrieval_top1
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained

    clip, card = load_pretrained("text-encoder")
    vae, _ = load_pretrained("video-vae")
    for split in ("train", "heldout"):
        md = moving_digits(n, seed=seed, split=split)
        latents = encode_videos(vae, md.videos)
        acc = retrieval_top1(clip, latents, caption_index(md.digits, md.colours, md.directions))
        with torch.no_grad():
            best = (clip.embed_video(latents) @ clip.embed_text(caption_table()).T).argmax(1)
        per_attribute = {name: round(float((got == want).float().mean()), 4) for name, got, want in
                         zip(("digit", "colour", "direction"), caption_attributes(best),
                             (md.digits, md.colours, md.directions), strict=True)}
        rec = {"component": "text-encoder", "split": split, "retrieval_top1": round(acc, 4),
               "top1_caption_per_attribute": per_attribute, "n_videos": n,
               "train_minutes": card["train_minutes"], "train_steps": card["train_steps"], "threads": threads,
               "date": datetime.date.today().isoformat()}
        print(json.dumps(rec))
        append_records("video_world", [rec])


def measure_text_encoder_short(threads: int) -> None:
    from minidiff.recipes import text_encoder

    run = text_encoder(minutes=1.0, n_videos=2000, n_eval=500, progress=False)
    result, metrics = run.result, run.card["metrics"]
    rec = {"component": "text-encoder-short", "train_steps": result.step, "train_minutes": round(result.minutes, 2),
           **{k: v for k, v in metrics.items() if k != "source"}, "n_videos_train": 2000, "n_eval": 500,
           "threads": threads, "date": datetime.date.today().isoformat()}
    print(json.dumps(rec))
    append_records("video_world", [rec])


def measure_prompt_probes(threads: int) -> None:
    from minidiff.data import COLOUR_NAMES, DIRECTION_NAMES, moving_digits
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained

    clip, _ = load_pretrained("text-encoder")
    vae, _ = load_pretrained("video-vae")
    pool = moving_digits(240, seed=5)
    red, left = COLOUR_NAMES.index("red"), DIRECTION_NAMES.index("left")
    probes = {"a red 3 moving left": (pool.digits == 3) & (pool.colours == red) & (pool.directions == left),
              "red": pool.colours == red, "moving left": pool.directions == left, "a 3": pool.digits == 3,
              "": torch.ones(len(pool), dtype=torch.bool)}
    with torch.no_grad():
        emb = clip.embed_video(encode_videos(vae, pool.videos))
        for prompt, match in probes.items():
            s = (clip.embed_text([prompt]) @ emb.T)[0]
            rec = {"component": "prompt-probes", "prompt": prompt, "matching_videos": int(match.sum()),
                   "similarity_matching": round(float(s[match].mean()), 3),
                   "similarity_others": round(float(s[~match].mean()), 3) if (~match).any() else None,
                   "threads": threads, "date": datetime.date.today().isoformat()}
            print(json.dumps(rec))
            append_records("video_world", [rec])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parts", nargs="*", default=["judge"],
                   choices=["judge", "video-vae", "text-encoder", "text-encoder-short", "prompt-probes"])
    p.add_argument("--split", default="heldout", choices=["train", "heldout"], help="videos for video-vae")
    p.add_argument("--record-in-card", action="store_true", help="also write the VAE's metrics into its card")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from minidiff.data import moving_digits
    from minidiff.eval import judge_videos
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    if "video-vae" in a.parts:
        measure_vae(judge, min(a.n, 1000), a.seed, a.threads, a.record_in_card, a.split)
    if "text-encoder" in a.parts:
        measure_text_encoder(min(a.n, 1000), a.seed, a.threads)
    if "text-encoder-short" in a.parts:
        measure_text_encoder_short(a.threads)
    if "prompt-probes" in a.parts:
        measure_prompt_probes(a.threads)
    if "judge" not in a.parts:
        return 0
    for split in ("train", "heldout"):
        t0 = time.perf_counter()
        md = moving_digits(a.n, seed=a.seed, split=split)
        t1 = time.perf_counter()
        acc = judge_videos(md.videos, judge, md.digits, md.colours, md.directions).accuracy
        t2 = time.perf_counter()
        rec = {"component": "judge", "split": split, "n_videos": a.n, **acc,
               "seconds_per_1000": round((t2 - t1) / a.n * 1000, 2),
               "generate_seconds_per_1000": round((t1 - t0) / a.n * 1000, 2), "threads": a.threads,
               "date": datetime.date.today().isoformat()}
        print(json.dumps(rec))
        append_records("video_world", [rec])
    return 0


if __name__ == "__main__":
    sys.exit(main())
