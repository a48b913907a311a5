"""Quality of generated digits per (model, sampler, steps), judged by the shipped digit classifier, with spreads.

usage: python benchmarks/image_quality.py [--model ddpm-digits] [--sampler ddpm|ddim|euler] [--steps 100 50 20 10]
                                         [--eta 0 1] [--keep-model-eps] [--shift 1] [--cfg 1 2 3] [--seeds 3]
                                         [--root data/pretrained] [--label NAME] [--n 500] [--threads 2]
                                         [--record-in-card]
       python benchmarks/image_quality.py --floors [--n 100 200 500 700]
       python benchmarks/image_quality.py --all     # the table the lessons show (COURSE_TABLE; about 1 h, 2 threads)
Appends records to benchmarks/results/image_quality.json:
  {"model", "sampler", "steps", "class_accuracy", "class_accuracy_std", "frechet", "frechet_std", "frechet_by_seed",
   "class_accuracy_by_seed", "seeds", "frechet_floor", "frechet_floor_std", "floor_draws", "n_samples",
   "n_reference", "judge", "train_minutes", "train_steps", "seconds_per_sample", "threads", "date"}
   (+ "cfg_scale" when guidance is used, "eta" for DDIM)
Each of --seeds sample seeds (0, 1, ...) draws n class-balanced samples (n/10 per digit); class_accuracy and frechet
are the means over the seeds and *_std their standard deviation (ddof 1; null with one seed): a difference smaller
than that is not a difference. Every sampler and model uses the same seeds, hence the same starting noises, so
differences between rows are paired. frechet: samples vs the held-out reference digits; frechet_floor: real
train-split digits with the same class counts and N vs the same reference, mean and std over 20 draws
(minidiff.eval.frechet_floor). The judge is trained on the train split only. Samplers: "ddpm-ancestral" (1000
steps), "ddim" (eta 0), "ddim-eta1", "ddim-keep-eps" (diffusers' default clipping: x0_hat clipped, the model's eps
kept), "euler", "euler-shift<a>".
--floors records the floor alone at several N (model "real digits", sampler "floor"): the distance depends on N.
No bf16 autocast unless the CPU has native bf16. --root/--label measure a checkpoint outside data/pretrained.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch
from _results import append_records


def generate(model_name: str, sampler: str, steps: int, n: int, batch: int, shift: float = 1.0, cfg: float = 1.0,
             root: str | None = None, seed: int = 0, eta: float = 0.0, keep_model_eps: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, float, dict]:
    """n class-balanced samples from the shipped model with the given sampler and seed; seconds per sample too."""
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
    g = torch.Generator().manual_seed(seed)
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(labels), batch):
        y = labels[i:i + batch]
        shape, kw = (len(y), 1, 16, 16), {"cond": {"y": y}, "generator": g, "progress": False}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_is_fast("cpu")):
            if sampler == "ddpm-ancestral":
                out.append(p_sample_loop(model, schedule, shape, **kw).float())
            elif sampler.startswith("euler"):
                out.append(euler_sample(model, shape, steps=steps, shift=shift, **kw).float())
            else:
                out.append(ddim_sample(model, schedule, shape, steps=steps, eta=eta,
                                       use_clipped_model_output=not keep_model_eps, **kw).float())
    seconds = time.perf_counter() - t0
    return torch.cat(out), labels, seconds / len(labels), card


def measure(judge, a, model: str, sampler: str, steps: int, cfg: float, eta: float) -> dict:
    """Generate and judge a.seeds sample sets; one record with means, spreads and the matched floor."""
    from minidiff.eval import evaluate_digits

    per_seed, secs = [], []
    for seed in range(a.seeds):
        samples, labels, sps, card = generate(model, sampler, steps, a.n, a.batch, a.shift, cfg, a.root, seed, eta,
                                              a.keep_model_eps)
        per_seed.append(evaluate_digits(judge, samples, labels))
        secs.append(sps)
        print(f"  {sampler} {steps} cfg {cfg:g} seed {seed}: {per_seed[-1]['class_accuracy']:.3f} "
              f"{per_seed[-1]['frechet']:.1f} ({sps:.4f} s/sample)", flush=True)

    def spread(key: str) -> tuple[float, float, list[float]]:
        xs = [r[key] for r in per_seed]
        return round(statistics.mean(xs), 4), round(statistics.stdev(xs), 4) if len(xs) > 1 else None, xs

    acc, acc_sd, acc_all = spread("class_accuracy")
    fd, fd_sd, fd_all = spread("frechet")
    first = per_seed[0]
    guided = {"cfg_scale": cfg} if len(a.cfg) > 1 or cfg != 1.0 else {}
    return {"model": a.label or model, "sampler": sampler, "steps": steps, **guided,
            **({"eta": eta} if sampler.startswith("ddim") else {}),
            "class_accuracy": acc, "class_accuracy_std": acc_sd, "frechet": round(fd, 3), "frechet_std": fd_sd,
            "class_accuracy_by_seed": acc_all, "frechet_by_seed": fd_all, "seeds": a.seeds,
            **{k: first[k] for k in ("frechet_floor", "frechet_floor_std", "floor_draws", "n_samples",
                                     "n_reference")},
            "judge": "digit-classifier (train split only)",
            "train_minutes": card["train_minutes"], "train_steps": card["train_steps"],
            "seconds_per_sample": round(statistics.median(secs), 4), "threads": a.threads,
            "date": datetime.date.today().isoformat()}


def measure_floors(judge, ns: list[int], threads: int) -> list[dict]:
    """The floor alone at several N (class-balanced): how the distance of real digits to real digits depends on N."""
    from minidiff.eval import frechet_floor

    recs = []
    for n in ns:
        fl = frechet_floor(judge, torch.arange(10).repeat_interleave(n // 10), draws=20)
        recs.append({"model": "real digits", "sampler": "floor", "steps": 0, "frechet_floor": round(
            statistics.mean(fl), 3), "frechet_floor_std": round(statistics.stdev(fl), 3), "floor_draws": len(fl),
            "n_samples": n, "judge": "digit-classifier (train split only)", "threads": threads,
            "date": datetime.date.today().isoformat()})
        print(json.dumps(recs[-1]), flush=True)
    return recs


# the records lessons 02-05 show, in the order they are measured (each line: the arguments of one run)
COURSE_TABLE = [
    "--floors --n 100 200 300 500 700",
    "--model ddpm-digits --sampler ddim --steps 10 20 50 100",
    "--model ddpm-digits --sampler ddim --eta 1 --steps 20 100 --seeds 2",
    "--model flow-digits --sampler euler --steps 20 10 50 --record-in-card",
    "--model dit-digits --sampler euler --steps 20 10 --record-in-card",
    "--model dit-digits --sampler euler --steps 20 --cfg 1.5 2 3 5 --seeds 1",
    "--model ddpm-digits --sampler ddim --keep-model-eps --steps 50 100 --seeds 1",
    # a 1000-step sampler costs about 25 min per seed of 500 on this 2-thread machine: one seed (its spread at
    # N = 500 is that of the 3-seed rows above)
    "--model ddpm-digits --sampler ddpm --record-in-card --seeds 1",
]


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] and sys.argv[1] == "--all":
        for line in COURSE_TABLE:
            print(f"== {line}", flush=True)
            main(line.split() + sys.argv[2:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ddpm-digits")
    p.add_argument("--sampler", choices=["ddpm", "ddim", "euler"], default="ddpm",
                   help="ddpm: 1000-step ancestral; ddim: each of --steps and --eta; euler: flow models")
    p.add_argument("--eta", type=float, nargs="+", default=[0.0], help="DDIM's eta values (0 = deterministic)")
    p.add_argument("--keep-model-eps", action="store_true",
                   help="DDIM as diffusers' default clips: keep the model's eps after clipping x0_hat")
    p.add_argument("--shift", type=float, default=1.0, help="time shift of the Euler grid")
    p.add_argument("--steps", type=int, nargs="+", default=[100, 50, 20, 10])
    p.add_argument("--cfg", type=float, nargs="+", default=[1.0], help="classifier-free guidance scales (1 = none)")
    p.add_argument("--seeds", type=int, default=3, help="sample seeds per setting (the spread needs at least 2)")
    p.add_argument("--floors", action="store_true", help="record only the real-vs-real floor at each of --n")
    p.add_argument("--root", default=None, help="directory of the checkpoint (default data/pretrained)")
    p.add_argument("--label", default=None, help="model name to record (default --model)")
    p.add_argument("--n", type=int, nargs="+", default=[500], help="number of samples (multiple of 10)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record-in-card", action="store_true",
                   help="also write the first setting's metrics into the model's card")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    if a.floors:
        append_records("image_quality", measure_floors(judge, a.n, a.threads))
        return 0
    if len(a.n) != 1 or a.n[0] % 10:
        p.error("give one --n, a multiple of 10, when measuring a model")
    a.n = a.n[0]
    if a.sampler == "ddpm":
        runs = [("ddpm-ancestral", 1000, 0.0)]
    elif a.sampler == "euler":
        runs = [("euler" if a.shift == 1 else f"euler-shift{a.shift:g}", k, 0.0) for k in a.steps]
    else:
        name = {0.0: "ddim", 1.0: "ddim-eta1"}
        runs = [(name.get(e, f"ddim-eta{e:g}") + ("-keep-eps" if a.keep_model_eps else ""), k, e)
                for e in a.eta for k in a.steps]
    first = None
    for (sampler, steps, eta), scale in [(r, c) for r in runs for c in a.cfg]:
        rec = measure(judge, a, a.model, sampler, steps, scale, eta)
        print(json.dumps(rec), flush=True)
        append_records("image_quality", [rec])
        first = first or rec
    if a.record_in_card:
        from minidiff.pretrained import update_card

        keys = ("class_accuracy", "class_accuracy_std", "frechet", "frechet_std", "frechet_floor",
                "frechet_floor_std", "n_samples", "seeds", "seconds_per_sample")
        guided = f", cfg {first['cfg_scale']:g}" if "cfg_scale" in first else ", no guidance"
        update_card(a.model, {"metrics": {**{k: first[k] for k in keys}, "source": "benchmarks/image_quality.py "
                    f"({first['sampler']}, {first['steps']} steps{guided}, "
                    f"{'seed 0' if a.seeds == 1 else f'seeds 0-{a.seeds - 1}'}), {first['date']}"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
