"""A pytest plugin (loaded by pyproject.toml's addopts) for grading with nbval.

The course's own lessons (notebooks/NN_*.ipynb) compare each check cell's ✅ line with the stored one
(`# NBVAL_CHECK_OUTPUT`). Any other notebook — a student's submission — is graded by whether its check cells raise,
never by what it has stored: a right answer whose check cell still shows an old error from before the fix passes.
"""

from __future__ import annotations

from pathlib import Path

LESSONS = Path(__file__).resolve().parents[2] / "notebooks"


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        options = getattr(item, "options", None)
        cell = getattr(item, "cell", None)
        if not isinstance(options, dict) or cell is None or not options.get("check"):
            continue
        if Path(str(item.fspath)).resolve().parent == LESSONS:
            continue
        if "check" in cell.get("metadata", {}).get("tags", []):
            options["check"] = False  # stored outputs of a submission's check cells never count
