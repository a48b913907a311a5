"""Run every lesson and every student notebook with `jupyter nbconvert --to notebook --execute` (nbclient, which
papermill and nbgrader's autograder use too), several times each, and record whether each run finished.

usage: python benchmarks/standard_executors.py [--repeats N] [--full]
Appends one record per notebook to benchmarks/results/standard_executors.json:
  {"notebook", "runs", "finished", "stalled", "errors_outside_checks", "seconds_mean", "seconds_max", "fast_mode",
   "nbclient", "date"}
A run "stalled" when nbconvert hit its per-cell timeout (600 s: no lesson cell takes more than ~70 s in fast mode).
Student notebooks run with --allow-errors (their unsolved checks raise on purpose); any other error is counted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import append_records
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]


def run_once(nb: Path, out: Path, fast: bool) -> tuple[float, bool, int]:
    """(seconds, stalled, errors outside check cells) for one nbconvert run."""
    env = {**os.environ, "MINIDIFF_FAST": "1" if fast else "0"}
    student = nb.parent.name == "exercises"
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(nb),
                        "--output", str(out), "--ExecutePreprocessor.timeout=600",
                        *(["--allow-errors"] if student else [])],
                       capture_output=True, text=True, cwd=nb.parent, env=env)
    seconds = time.perf_counter() - t0
    stalled = "CellTimeoutError" in r.stderr or "timed out" in r.stderr.lower()
    if r.returncode != 0:
        return seconds, stalled, 0 if stalled else 1
    cells = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    bad = sum(1 for c in cells for o in c["outputs"] if o["output_type"] == "error"
              and "check" not in c["metadata"].get("tags", []))
    return seconds, False, bad


def main() -> int:
    import nbclient

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--full", action="store_true", help="the learners' budgets (default: fast mode, as under test)")
    a = p.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + sorted(
        (ROOT / "notebooks" / "exercises").glob("[0-9][0-9]_*.ipynb"))
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for nb in tqdm(notebooks, desc="notebooks"):
            runs = [run_once(nb, Path(tmp) / f"run{i}.ipynb", not a.full) for i in range(a.repeats)]
            rec = {"notebook": str(nb.relative_to(ROOT)), "runs": len(runs),
                   "finished": sum(not s for _, s, _ in runs), "stalled": sum(s for _, s, _ in runs),
                   "errors_outside_checks": sum(e for _, _, e in runs),
                   "seconds_mean": round(sum(t for t, _, _ in runs) / len(runs), 1),
                   "seconds_max": round(max(t for t, _, _ in runs), 1), "fast_mode": not a.full,
                   "nbclient": nbclient.__version__, "date": datetime.date.today().isoformat()}
            print(json.dumps(rec), flush=True)
            records.append(rec)
    append_records("standard_executors", records)
    return 0 if all(r["finished"] == r["runs"] and not r["errors_outside_checks"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
