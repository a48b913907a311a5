"""What several processes buy on this machine: training throughput of a recipe in one process vs under torchrun.

usage: python benchmarks/distributed.py [--recipes flow-digits dit-digits] [--seconds 45] [--repeats 3]
       python benchmarks/distributed.py --table     # print the README's table from the latest records
Appends to benchmarks/results/distributed.json one record per recipe and layout:
  {"recipe", "processes", "threads_per_process", "global_batch", "seconds_per_run", "steps_per_second" (mean),
   "steps_per_second_std" (over the repeats), "runs" (each run's steps/s), "speedup" (steps/s over the
   1 process x all cores layout, with its spread propagated), "cpus", "date"}

Each run is the real command line (`python -m minidiff.recipes NAME --minutes M` or
`torchrun --standalone --nproc_per_node=2 -m minidiff.recipes NAME --minutes M`) with the recipe's global batch, so
both layouts take the same optimiser steps; steps/s is the card's train_steps / train_minutes (training only, not
start-up). The layouts are interleaved within each repeat so that a slow minute of the machine hits all of them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import append_records, load_records

ROOT = Path(__file__).resolve().parents[1]
BATCH = {"flow-digits": 128, "dit-digits": 16, "ddpm-digits": 128}


def run_once(recipe: str, processes: int, threads: int, seconds: float) -> float:
    """One training run of `seconds`; returns its optimiser steps per second."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as out:
        args = ["-m", "minidiff.recipes", recipe, "--minutes", f"{seconds / 60:.4f}", "--steps", "1000000",
                "--device", "cpu", "--out", out]
        launcher = [sys.executable] if processes == 1 else \
            [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        r = subprocess.run(launcher + args, capture_output=True, text=True, env=env, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(launcher + args)} failed:\n{r.stderr[-3000:]}")
        card = json.loads((Path(out) / f"{recipe}.json").read_text())
    return card["train_steps"] / (card["train_minutes"] * 60)


MODELS = {"flow-digits": "U-Net", "dit-digits": "DiT", "ddpm-digits": "U-Net"}


def readme_table(records: list[dict]) -> str:
    """The README's table (Markdown) from the latest record of each recipe and layout."""
    latest: dict[tuple[str, int, int], dict] = {}
    for r in records:
        latest[(r["recipe"], r["processes"], r["threads_per_process"])] = r
    recipes = list(dict.fromkeys(k[0] for k in latest))
    layouts = sorted({k[1:] for k in latest}, key=lambda lay: (lay[0], -lay[1]))
    head = "| layout | " + " | ".join(f"{n} ({MODELS[n]}, batch {BATCH[n]}): steps/s | speed-up"
                                      for n in recipes) + " |"
    lines = [head, "|---|" + "---|---|" * len(recipes)]
    for procs, threads in layouts:
        name = (f"{procs} process{'es' if procs > 1 else ''} × {threads} thread{'s' if threads > 1 else ''}"
                + (" (torchrun, gloo)" if procs > 1 else ""))
        cells = []
        for n in recipes:
            r = latest.get((n, procs, threads))
            reference = procs == 1 and threads == r["cpus"] if r is not None else False
            cells += ["—", "—"] if r is None else [f"{r['steps_per_second']:.2f} ± {r['steps_per_second_std']:.2f}",
                                                   "1 (reference)" if reference else
                                                   f"{r['speedup']:.2f} ± {r['speedup_spread']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", default=["flow-digits", "dit-digits"], choices=sorted(BATCH))
    p.add_argument("--seconds", type=float, default=45.0, help="training seconds per run (default 45)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--table", action="store_true", help="print the README's table from the recorded results")
    a = p.parse_args()
    if a.table:
        print(readme_table(load_records("distributed")))
        return 0
    cpus = os.cpu_count() or 1
    layouts = [(1, cpus), (1, 1), (2, max(1, cpus // 2))]  # 1 process x all cores is the reference
    for recipe in a.recipes:
        runs: dict[tuple[int, int], list[float]] = {lay: [] for lay in layouts}
        for rep in range(a.repeats):
            for lay in layouts:
                runs[lay].append(run_once(recipe, *lay, a.seconds))
                print(f"{recipe} repeat {rep + 1}: {lay[0]} process(es) x {lay[1]} thread(s): "
                      f"{runs[lay][-1]:.2f} steps/s", flush=True)
        ref = runs[layouts[0]]
        ref_mean, ref_std = statistics.mean(ref), statistics.stdev(ref) if len(ref) > 1 else 0.0
        records = []
        for (procs, threads), values in runs.items():
            mean = statistics.mean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            speedup = mean / ref_mean
            spread = speedup * math.sqrt((std / mean) ** 2 + (ref_std / ref_mean) ** 2)
            records.append({"recipe": recipe, "processes": procs, "threads_per_process": threads,
                            "global_batch": BATCH[recipe], "seconds_per_run": a.seconds,
                            "steps_per_second": round(mean, 3), "steps_per_second_std": round(std, 3),
                            "runs": [round(v, 3) for v in values], "speedup": round(speedup, 3),
                            "speedup_spread": round(spread, 3), "cpus": cpus,
                            "date": datetime.date.today().isoformat()})
            print(json.dumps(records[-1]))
        append_records("distributed", records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
