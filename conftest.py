"""Test-wide settings, applied before any test module (or notebook kernel) imports torch.

- MINIDIFF_FAST=1: notebooks run with small budgets (set MINIDIFF_FAST=0 to test the full learner budgets).
- One thread per worker: `pytest -n 2` runs two workers on our 2 cores; notebook kernels inherit this environment.
"""

import os

os.environ.setdefault("MINIDIFF_FAST", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
