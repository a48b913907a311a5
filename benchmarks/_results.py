"""Shared by the benchmark scripts: append records to benchmarks/results/NAME.json atomically."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def append_records(name: str, new: list[dict]) -> Path:
    """Append `new` to the JSON list in results/NAME.json (created if missing), via a temporary file + rename."""
    path = RESULTS_DIR / f"{name}.json"
    records = json.loads(path.read_text()) if path.exists() else []
    records.extend(new)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(path)
    return path
