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
    """Append `new` to the JSON list in results/NAME.json (created if missing), via a temporary file + rename."""
    path = RESULTS_DIR / f"{name}.json"
    records = json.loads(path.read_text()) if path.exists() else []
    records.extend(new)
    write_json_atomic(path, records)
    return path
