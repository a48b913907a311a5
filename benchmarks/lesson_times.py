"""Time each lesson notebook run top to bottom in a fresh kernel at the learners' full budget.

usage: python benchmarks/lesson_times.py [NN ...] [--threads N] [--inplace]
Appends one record per lesson to benchmarks/results/lesson_times.json:
  {"lesson", "seconds", "threads", "fast_mode", "torch", "cpu", "date"}
With --inplace the executed notebook (with its outputs) is written back: that is how lessons are committed.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import sys
import time
from pathlib import Path

from _results import append_records

ROOT = Path(__file__).resolve().parents[1]


def run(nb_path: str, threads: int, inplace: bool) -> dict:
    import nbformat

    from minidiff.exercises import execute_notebook

    os.environ["MINIDIFF_FAST"] = "0"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    nb = nbformat.read(nb_path, as_version=4)
    t0 = time.perf_counter()
    execute_notebook(nb, str(Path(nb_path).parent), timeout=3600)
    seconds = time.perf_counter() - t0
    if inplace:
        nbformat.write(nb, nb_path)
    import torch

    return {
        "lesson": Path(nb_path).name,
        "seconds": round(seconds, 1),
        "threads": threads,
        "fast_mode": False,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "date": datetime.date.today().isoformat(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 01 02 (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--inplace", action="store_true", help="write the executed notebooks back")
    a = p.parse_args()
    paths = sorted(glob.glob(str(ROOT / "notebooks" / "[0-9][0-9]_*.ipynb")))
    if a.lessons:
        paths = [q for q in paths if Path(q).name[:2] in a.lessons]
    if not paths:
        print("no matching lesson notebooks", file=sys.stderr)
        return 2
    for q in paths:
        rec = run(q, a.threads, a.inplace)
        print(json.dumps(rec))
        append_records("lesson_times", [rec])
    return 0


if __name__ == "__main__":
    sys.exit(main())
