"""Quality of generated digits per (model, sampler, steps), judged by the shipped digit classifier.

usage: python benchmarks/image_quality.py [--model ddpm-digits] [--sampler ddpm|ddim|euler] [--steps 100 50 20 10]
                                         [--shift 1] [--cfg 1 2 3] [--root data/pretrained] [--label NAME]
                                         [--n 500] [--threads 2] [--record-in-card]
Appends records to benchmarks/results/image_quality.json:
  {"model", "sampler", "steps", "class_accuracy", "frechet", "frechet_floor", "frechet_floor_range", "n_samples",
   "n_reference",
   "train_minutes", "train_steps", "seconds_per_sample", "threads", "date"} (+ "cfg_scale" when guidance is used)
Samples are class-balanced (n/10 per digit), seed 0, no guidance unless --cfg; bf16 autocast where the CPU has native
bf16. --root/--label measure a checkpoint outside data/pretrained (e.g. a snapshot of a recipe's run) under a name.
frechet: samples vs the held-out reference digits; frechet_floor: N real training digits vs the same reference
(mean over 5 random subsets, with their range).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import torch
from _results import append_records


def generate(model_name: str, sampler: str, steps: int, n: int, batch: int, shift: float = 1.0, cfg: float = 1.0,
             root: str | None = None) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """n class-balanced samples from the shipped model with the given sampler; returns seconds per sample too."""
    from minidiff.ddim import ddim_sample
    from minidiff.ddpm import p_sample_loop
    from minidiff.flow import euler_sample
    from minidiff.guidance import ClassifierFreeGuidance
    from minidiff.pretrained import ROOT, load_pretrained
    from minidiff.schedules import make_schedule
    from minidiff.utils import bf16_is_fast

    model, card = load_pretrained(model_name, root=root or ROOT)
    if cfg != 1.0:
        model = ClassifierFreeGuidance(model, cfg, null={"y": model.config.num_classes})
    rc = card["recipe_config"]
    schedule = make_schedule(rc["schedule"], rc["T"]) if "schedule" in rc else None
    labels = torch.arange(10).repeat_interleave(n // 10)
    g = torch.Generator().manual_seed(0)
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(labels), batch):
        y = labels[i:i + batch]
        shape, kw = (len(y), 1, 16, 16), {"cond": {"y": y}, "generator": g}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_is_fast("cpu")):
            if sampler == "ddpm-ancestral":
                out.append(p_sample_loop(model, schedule, shape, **kw).float())
            elif sampler.startswith("euler"):
                out.append(euler_sample(model, shape, steps=steps, shift=shift, **kw).float())
            else:  # ddim, eta = 0: deterministic given the starting noise
                out.append(ddim_sample(model, schedule, shape, steps=steps, eta=0.0, **kw).float())
    seconds = time.perf_counter() - t0
    return torch.cat(out), labels, seconds / len(labels), card


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ddpm-digits")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "euler"], default="ddpm",
                   help="ddpm: 1000-step ancestral; ddim: eta = 0 with each of --steps; euler: flow models")
    p.add_argument("--shift", type=float, default=1.0, help="time shift of the Euler grid")
    p.add_argument("--steps", type=int, nargs="+", default=[100, 50, 20, 10])
    p.add_argument("--cfg", type=float, nargs="+", default=[1.0], help="classifier-free guidance scales (1 = none)")
    p.add_argument("--root", default=None, help="directory of the checkpoint (default data/pretrained)")
    p.add_argument("--label", default=None, help="model name to record (default --model)")
    p.add_argument("--n", type=int, default=500, help="number of samples (multiple of 10)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record-in-card", action="store_true", help="also write the metrics into the model's card")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from minidiff.eval import evaluate_digits
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    if a.sampler == "ddpm":
        runs = [("ddpm-ancestral", 1000)]
    elif a.sampler == "euler":
        runs = [("euler" if a.shift == 1 else f"euler-shift{a.shift:g}", k) for k in a.steps]
    else:
        runs = [("ddim", k) for k in a.steps]
    for (sampler, steps), scale in [(r, c) for r in runs for c in a.cfg]:
        samples, labels, sps, card = generate(a.model, sampler, steps, a.n, a.batch, a.shift, scale, a.root)
        guided = {"cfg_scale": scale} if len(a.cfg) > 1 or scale != 1.0 else {}
        rec = {"model": a.label or a.model, "sampler": sampler, "steps": steps, **guided,
               **evaluate_digits(judge, samples, labels),
               "train_minutes": card["train_minutes"], "train_steps": card["train_steps"],
               "seconds_per_sample": round(sps, 4), "threads": a.threads,
               "date": datetime.date.today().isoformat()}
        print(json.dumps(rec))
        append_records("image_quality", [rec])
    if a.record_in_card and a.sampler == "ddpm":
        from minidiff.pretrained import update_card

        keys = ("class_accuracy", "frechet", "frechet_floor", "frechet_floor_range", "n_samples", "seconds_per_sample")
        update_card(a.model, {"metrics": {**{k: rec[k] for k in keys}, "source": "benchmarks/image_quality.py "
                                          f"(ddpm-ancestral, 1000 steps, seed 0), {rec['date']}"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
