"""Shared by the benchmark scripts: read and append records in benchmarks/results/NAME.json (atomic writes)."""

from __future__ import annotations

import json
from pathlib import Path

from minidiff.checkpoint import write_json_atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def load_records(name: str) -> list[dict]:
    """The committed records of results/NAME.json (the lessons read the same files)."""
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no benchmark results at {path}; run python benchmarks/{name}.py from the "
                                "project root")
    return json.loads(path.read_text())


def append_records(name: str, new: list[dict]) -> Path:
    """Append `new` to the JSON list in results/NAME.json (created if missing), via a temporary file + rename, under
    a lock file, so benchmark processes running side by side never lose each other's records."""
    path = RESULTS_DIR / f"{name}.json"
    with open(RESULTS_DIR / f".{name}.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): one benchmark process at a time
            pass
        records = json.loads(path.read_text()) if path.exists() else []
        records.extend(new)
        write_json_atomic(path, records)
    return path
