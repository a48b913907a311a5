"""Longer videos (lesson 09): accuracy per segment along storyboards, and conditioning augmentation trained vs none.

usage: python benchmarks/long_video.py [--steps 600] [--aug 0.3] [--segments 5] [--every 4] [--threads 2]
Appends records to benchmarks/results/long_video.json, one per (model, context noise at sampling):
  {"model": "shipped" | "fine-tuned, clean context" | "fine-tuned, augmented context", "train_context_noise",
   "context_noise", "segments": [{digit, colour, direction, all_three} per segment], "n_videos", "train_steps",
   "train_seconds", "threads", "date"}
Two fine-tunes of the shipped MMDiT start from the same weights, data (the recipe's 4,000 cached training latents),
seed and steps (half stills, half image-to-video, lr 1e-4): one gives the image-to-video context frame clean (as the
shipped recipe does), one noises it to a level drawn in [0, --aug] (conditioning augmentation, as Imagen Video's
cascade and Stable Video Diffusion train). Each is then chained over the back-and-forth storyboard
(`long_video.back_and_forth`) with context noise 0 and --aug / 2 at sampling; so is the shipped model. The control
(clean fine-tune) separates the effect of the augmentation from that of more training. --colour-match-only records
the shipped model chained with `extend_video(colour_match=True)` (each context frame's ink colour matched to the
video's first frame).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import time

import torch
from _results import append_records


def fine_tune(pipe, steps: int, context_noise: float):
    """A copy of the shipped MMDiT trained `steps` more steps, its i2v context noised up to `context_noise`."""
    from minidiff.latents import cached_video_latents
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes.configs import settings
    from minidiff.recipes.video import _t2v_text, t2v_loss_fn
    from minidiff.train import TrainConfig, train

    r = settings("t2v-mmdit", "default")
    clip, _ = load_pretrained("text-encoder")
    latents, index, _ = cached_video_latents(pipe.vae, 4000, r["data_seed"])
    txt, vec = _t2v_text(clip, None)
    loss = t2v_loss_fn(txt, vec, len(txt) - 1, r["text_dropout"], pipe.shift, tasks={"t2i": 0.5, "i2v": 0.5},
                       context_noise=context_noise)
    model = copy.deepcopy(pipe.mmdit).train()
    t0 = time.perf_counter()
    result = train(model, loss, (latents, index), TrainConfig(steps=steps, batch_size=16, lr=1e-4, ema_decay=0.99,
                                                              seed=0, log_every=50), progress=False)
    return result.ema.eval(), time.perf_counter() - t0


def main() -> None:
    from minidiff.long_video import back_and_forth, extend_video, judge_segments
    from minidiff.pipeline import TextToVideo
    from minidiff.pretrained import load_pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--aug", type=float, default=0.3)
    p.add_argument("--segments", type=int, default=5)
    p.add_argument("--every", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--colour-match-only", action="store_true",
                   help="only the shipped model with each context frame's colour matched to the first frame")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    pipe = TextToVideo.from_pretrained()
    judge, _ = load_pretrained("digit-classifier")
    board, digits, colours, directions = back_and_forth(a.segments, a.every)
    common = {"n_videos": len(digits), "threads": a.threads, "date": datetime.date.today().isoformat()}
    if a.colour_match_only:
        videos = extend_video(pipe, board, seed=0, colour_match=True)
        record = {"model": "shipped, colour matched", "train_context_noise": 0.0, "context_noise": 0.0,
                  "segments": judge_segments(videos, judge, digits, colours, directions), "train_steps": 0,
                  "train_seconds": 0.0, **common}
        print(record)
        append_records("long_video", [record])
        return
    models = [("shipped", pipe.mmdit, 0.0, 0, 0.0)]
    for name, noise in (("fine-tuned, clean context", 0.0), ("fine-tuned, augmented context", a.aug)):
        model, seconds = fine_tune(pipe, a.steps, noise)
        models.append((name, model, noise, a.steps, seconds))
    records = []
    for name, model, train_noise, steps, seconds in models:
        variant = dataclasses.replace(pipe, mmdit=model)
        for sample_noise in (0.0, a.aug / 2):
            videos = extend_video(variant, board, seed=0, context_noise=sample_noise)
            records.append({"model": name, "train_context_noise": train_noise, "context_noise": sample_noise,
                            "segments": judge_segments(videos, judge, digits, colours, directions),
                            "train_steps": steps, "train_seconds": round(seconds, 1), **common})
            print(name, sample_noise, [round(s["colour"], 2) for s in records[-1]["segments"]], flush=True)
    append_records("long_video", records)


if __name__ == "__main__":
    main()
