"""A new word for the shipped text-to-video model (lesson 09): adherence to the new word, and what the old words lose.

usage: python benchmarks/new_concept.py [--steps 600] [--replay 0 100] [--seeds 0] [--threads 2]
Appends records to benchmarks/results/new_concept.json:
  {"model": "shipped" | "orange-lora" | "orange-full", "replay", "train_seed", "rank", "targets", "lr", "train_steps",
   "train_seconds", "new": {judge accuracies on the 40 captions "a orange <digit> moving <direction>"}, "old": {judge
   accuracies on 58 training captions (every 4th)}, each with "n_videos" and "std_error" (binomial, of all_three),
   "threads", "date"}, and with --vae-check {"model": "video-vae", "tint", "rgb", "real", "reconstructed"}: the judge's
   colour accuracy on 40 re-tinted real videos and on their VAE reconstructions.
The word "orange" (tint (1, 0.55, 0.15), a colour no training caption has) is taught with
`recipes.concept.teach_word`: 100 re-tinted videos, LoRA of rank --rank on --targets (rank 0: full fine-tuning),
--replay old videos mixed in. The judge's palette gets the new colour as a seventh; every evaluation samples the same
seeds (paired before/after). White was the first choice and cannot work: the shipped video VAE decodes white digits
as blue (--vae-check).
"""

from __future__ import annotations

import argparse
import datetime
import math
import time
from dataclasses import replace

import torch
from _results import append_records

WORD, TINT = "orange", (1.0, 0.55, 0.15)  # between red and yellow: a tint the shipped video VAE reproduces


def adherence(pipe, judge, which: str, seed: int = 5) -> dict:
    """The judge's accuracies on the new-word captions ("new") or every 4th training caption ("old")."""
    from minidiff.data import COLOURS, caption_attributes, caption_table
    from minidiff.eval import judge_videos, split_captions
    from minidiff.recipes.concept import word_captions

    palette = {**COLOURS, WORD: TINT}
    if which == "new":
        prompts, d, m = word_captions(WORD)
        c = torch.full_like(d, len(COLOURS))
    else:
        idx = split_captions("train")[::4]
        d, c, m = caption_attributes(idx)
        prompts = [caption_table()[i] for i in idx.tolist()]
    videos = torch.cat([pipe(prompts[i:i + 60], seed=seed + i) for i in range(0, len(prompts), 60)])
    acc = judge_videos(videos, judge, d, c, m, palette=palette).accuracy
    p = acc["all_three"]
    return {**acc, "n_videos": len(prompts), "std_error": round(math.sqrt(max(p * (1 - p), 1e-12) / len(prompts)), 4)}


def vae_check(vae, judge, name: str, rgb: tuple[float, float, float]) -> dict:
    """Can the shipped VAE carry this tint? The judge's colour accuracy on re-tinted videos and reconstructions."""
    from minidiff.data import COLOURS
    from minidiff.eval import judge_videos
    from minidiff.models.vae import encode_videos
    from minidiff.recipes.concept import concept_videos

    videos, _, data = concept_videos(name, rgb, 40)
    palette = {**COLOURS, name: rgb}
    target = torch.full_like(data.digits, len(COLOURS))
    with torch.no_grad():
        recon = vae.decode(encode_videos(vae, videos) / vae.config.scaling_factor).clamp(-1, 1)
    return {"model": "video-vae", "tint": name, "rgb": list(rgb),
            **{k: judge_videos(v, judge, data.digits, target, data.directions, palette=palette).accuracy["colour"]
               for k, v in (("real", videos), ("reconstructed", recon))}}


def main() -> None:
    from minidiff.pipeline import TextToVideo
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes.concept import CONCEPT_TARGETS, CONCEPT_TRAIN, teach_word

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=CONCEPT_TRAIN.steps)
    p.add_argument("--replay", type=int, nargs="+", default=[0, 100])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--targets", nargs="+", default=list(CONCEPT_TARGETS))
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--shipped", action="store_true", help="also judge the shipped model on the old captions")
    p.add_argument("--vae-check", action="store_true", help="only the VAE round trip of white and orange")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    pipe = TextToVideo.from_pretrained()
    judge, _ = load_pretrained("digit-classifier")
    common = {"threads": a.threads, "date": datetime.date.today().isoformat()}
    if a.vae_check:
        records = [{**vae_check(pipe.vae, judge, n, rgb), **common} for n, rgb in (("white", (1.0, 1.0, 1.0)),
                                                                                  (WORD, TINT))]
        print(records)
        append_records("new_concept", records)
        return
    records = [{"model": "shipped", "old": adherence(pipe, judge, "old"), **common}] if a.shipped else []
    for replay in a.replay:
        for seed in a.seeds:
            t0 = time.perf_counter()
            cfg = replace(CONCEPT_TRAIN, steps=a.steps, seed=seed, lr=a.lr or CONCEPT_TRAIN.lr)
            taught, result = teach_word(pipe, WORD, TINT, replay=replay, progress=False, seed=seed, rank=a.rank,
                                        targets=tuple(a.targets), train_config=cfg)
            seconds = time.perf_counter() - t0
            records.append({"model": f"{WORD}-{'lora' if a.rank else 'full'}", "replay": replay, "train_seed": seed,
                            "rank": a.rank, "targets": a.targets if a.rank else "all", "lr": cfg.lr,
                            "train_steps": result.step,
                            "train_seconds": round(seconds, 1), "new": adherence(taught, judge, "new"),
                            "old": adherence(taught, judge, "old"), **common})
            print(records[-1], flush=True)
    append_records("new_concept", records)


if __name__ == "__main__":
    main()
