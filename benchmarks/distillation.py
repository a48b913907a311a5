"""Progressive distillation of the shipped flow-digits U-Net (lesson 09): quality per sampling step count, for the
teacher and for the students of each halving, with spreads; and the cost of distilling.

usage: python benchmarks/distillation.py [--stage-steps 300] [--seeds 3] [--n 500] [--threads 2] [--no-direct]
Appends records to benchmarks/results/distillation.json:
  {"model": "teacher" | "student" | "direct", "steps", "class_accuracy", "class_accuracy_std", "frechet",
   "frechet_std", "frechet_floor", "frechet_floor_std", "n_samples", "seeds", "train_steps", "train_seconds",
   "train_steps_cumulative", "train_seconds_cumulative", "threads", "date"}
The teacher (16 Euler steps) is distilled 16 -> 8 -> 4 -> 2 -> 1 (`distill.progressive_distillation_loss`, each stage
--stage-steps steps of batch 128, starting from the previous student); "direct" trains a 1-step student straight from
the teacher's own 2-step grid for as many steps as the whole chain (the same cost in one jump). Every model is judged
on the same --seeds sample sets (class-balanced, the same noises: paired) with the digit classifier, and the Fréchet
floor of real digits at the same N is recorded beside it. Timings are this machine's, with --threads threads.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import time

import torch
from _results import append_records


def judge_model(model, steps: int, seeds: int, n: int, judge) -> dict:
    from minidiff.eval import evaluate_digits
    from minidiff.flow import euler_sample

    labels = torch.arange(10).repeat_interleave(n // 10)
    runs = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        x = euler_sample(model, (n, 1, 16, 16), steps=steps, cond={"y": labels}, generator=g, progress=False)
        runs.append(evaluate_digits(judge, x, labels))
    out = {k: round(statistics.mean(r[k] for r in runs), 4) for k in ("class_accuracy", "frechet")}
    out.update({f"{k}_std": round(statistics.stdev(r[k] for r in runs), 4) if seeds > 1 else None
                for k in ("class_accuracy", "frechet")})
    out.update(frechet_floor=runs[0]["frechet_floor"], frechet_floor_std=runs[0]["frechet_floor_std"], n_samples=n,
               seeds=seeds)
    return out


def distil(teacher, student_steps: int, train_steps: int, x, y):
    """One halving: a copy of `teacher` trained to take `student_steps` steps; (EMA student, seconds)."""
    from minidiff.distill import progressive_distillation_loss
    from minidiff.train import TrainConfig, train

    student = copy.deepcopy(teacher).train().requires_grad_(True)

    def loss_fn(model, xb, yb, g):
        return progressive_distillation_loss(model, teacher, xb, student_steps, cond={"y": yb}, generator=g)

    t0 = time.perf_counter()
    result = train(student, loss_fn, (x, y), TrainConfig(steps=train_steps, batch_size=128, lr=1e-4, ema_decay=0.99,
                                                          log_every=50), progress=False)
    return result.ema.eval().requires_grad_(False), time.perf_counter() - t0


def main() -> None:
    from minidiff.data import load_digits
    from minidiff.pretrained import load_pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage-steps", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-direct", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    teacher, _ = load_pretrained("flow-digits")
    teacher.requires_grad_(False)
    judge, _ = load_pretrained("digit-classifier")
    x, y = load_digits(16, split="train")
    common = {"threads": a.threads, "date": datetime.date.today().isoformat()}
    records = []
    for steps in (1, 2, 4, 8, 16):
        records.append({"model": "teacher", "steps": steps, **judge_model(teacher, steps, a.seeds, a.n, judge),
                        "train_steps": 0, "train_seconds": 0.0, **common})
        print(records[-1], flush=True)
    current, total_steps, total_seconds = teacher, 0, 0.0
    for steps in (8, 4, 2, 1):
        current, seconds = distil(current, steps, a.stage_steps, x, y)
        total_steps, total_seconds = total_steps + a.stage_steps, total_seconds + seconds
        records.append({"model": "student", "steps": steps, **judge_model(current, steps, a.seeds, a.n, judge),
                        "train_steps": a.stage_steps, "train_seconds": round(seconds, 1),
                        "train_steps_cumulative": total_steps, "train_seconds_cumulative": round(total_seconds, 1),
                        **common})
        print(records[-1], flush=True)
    if not a.no_direct:
        direct, seconds = distil(teacher, 1, total_steps, x, y)
        records.append({"model": "direct", "steps": 1, **judge_model(direct, 1, a.seeds, a.n, judge),
                        "train_steps": total_steps, "train_seconds": round(seconds, 1), **common})
        print(records[-1], flush=True)
    append_records("distillation", records)


if __name__ == "__main__":
    main()
