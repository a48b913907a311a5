"""Time every widget's answer in JupyterLab in a real browser: runs the browser test alone (the machine otherwise
quiet) and appends its per-control records to benchmarks/results/widget_latency.json.

usage: python benchmarks/widget_latency.py [pytest -k expression]
Each record: {"lesson", "widget", "control", "round", "seconds", "final_seconds", "fast_mode", "threads", "date"}
(every control is moved 3 times, back and forth: rounds 0-2), plus one
{"lesson", "run_through_last_widget_seconds", "date"} per lesson (older records: "run_all_seconds").
"seconds" runs from the key press or click to the first new picture, "final_seconds" to the final one (the same,
but for a widget that shows a coarse preview first). The lessons run in fast mode (MINIDIFF_FAST=1), as in the
test: the widgets draw the same pictures from the same shipped models; what fast mode shrinks is the training and
sample counts of other cells, and the DDIM explorer's menu of step counts (1, 5, 20 instead of 1 ... 100).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = dict(os.environ, MINIDIFF_WIDGET_LATENCY="1", MINIDIFF_REQUIRE_BROWSER="1", MINIDIFF_WIDGET_REPEATS="3")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/browser"]
    if len(sys.argv) > 1:
        cmd += ["-k", sys.argv[1]]
    sys.exit(subprocess.run(cmd, cwd=ROOT, env=env).returncode)
