"""Grade submissions: run each student notebook top to bottom in a fresh kernel and read every check cell's outcome.

    python -m minidiff.exercises grade alice/02_ddpm.ipynb bob/02_ddpm.ipynb
    python -m minidiff.exercises grade submissions/ --csv grades.csv --json grades.json

Outputs are stripped before execution, so what a student left in the notebook (a stale error, a stale ✅) never
counts. One row per (student, exercise): passed, wrong (the check's hint, first line), unsolved (still the stub),
error (the exception that stopped the student's code: SyntaxError, NameError, ...), not reached (the notebook timed
out or stopped before the check). A check cell is a code cell tagged "check"; its exercise is the `check_*` it calls.
A project cell (tagged "project", `check_project_*`) is graded the same way, and its detail reports the measured
score against the bar; a project whose training budget fast mode (the default) cuts — lesson 05's — is "not graded"
there (use --full).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

STATUSES = ("passed", "wrong", "unsolved", "error", "not reached", "not graded")
GRADED_TAGS = ("check", "project")
_CHECK_CALL = re.compile(r"\bcheck_(\w+)\s*\(")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Row:
    """One exercise of one submission."""

    student: str
    lesson: str
    exercise: str
    status: str  # one of STATUSES
    detail: str  # the hint, the error, or "" when passed
    cell: int  # the check cell's index in the notebook (all cells counted, from 0)


def _first_line(text: str, limit: int = 160) -> str:
    line = _ANSI.sub("", text).strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _errors(cell) -> list:
    return [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]


def _exercise_name(source: str) -> str:
    m = _CHECK_CALL.search(source)
    return m.group(1) if m else "?"


def rows_from_executed(nb, student: str, lesson: str) -> list[Row]:
    """Read the outcome of every check cell of an executed notebook (nbformat.NotebookNode)."""
    rows: list[Row] = []
    since_check: list[tuple[int, object]] = []  # code cells after the previous check cell (the student's answer)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if not any(t in tags for t in GRADED_TAGS):
            since_check.append((i, cell))
            continue
        name = _exercise_name(cell.source)
        errors = _errors(cell)
        executed = cell.get("execution_count") is not None or bool(cell.get("outputs"))
        own = [(j, e) for j, c in since_check for e in _errors(c)]
        if not executed:
            status, detail = "not reached", "the notebook stopped or timed out before this check"
        elif errors and errors[0].ename == "CheckFailed":
            value = errors[0].evalue
            if "which is still the stub" in value:  # solved, but it calls an earlier exercise that is not
                status, detail = "unsolved", _first_line(value.split(":")[0])
            elif "still the stub" in value:
                status, detail = "unsolved", "still the stub (raise NotImplementedError())"
            else:
                status, detail = "wrong", _first_line(value)
        elif errors:
            if own:  # the answer cell itself raised: report that, not the NameError it causes here
                j, e = own[0]
                status, detail = "error", _first_line(f"{e.ename} in cell {j}: {e.evalue}")
            else:
                status, detail = "error", _first_line(f"{errors[0].ename}: {errors[0].evalue}")
        else:
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            project = "project" in tags
            if "✅" in text:
                status, detail = "passed", _first_line(text[text.index("✅") + 1:]) if project else ""
            elif project and "⏭" in text:
                status, detail = "not graded", _first_line(text[text.index("⏭") + 1:])
            else:
                status, detail = "error", "the check printed no ✅ line"
        rows.append(Row(student, lesson, name, status, detail, i))
        since_check = []
    return rows


def strip_outputs(nb):
    """A copy with every output and execution count removed (stale results must not count)."""
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def grade_notebook(path: str | Path, student: str | None = None, timeout: int = 300, fast: bool = True,
                   cwd: str | Path | None = None) -> list[Row]:
    """Execute one submission (outputs stripped, fresh kernel, `timeout` seconds per cell) and return its rows.

    `fast` runs the lesson's training with the test budgets (MINIDIFF_FAST=1): the checks do not depend on them."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from .runner import execute_notebook

    path = Path(path)
    student = student or path.stem
    lesson = path.name[:2] if path.name[:2].isdigit() else path.stem
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as e:
        raise ValueError(f"{path} is not a readable notebook ({type(e).__name__}: {str(e)[:200]})") from None
    nb = strip_outputs(nb)
    old = os.environ.get("MINIDIFF_FAST")
    if fast:
        os.environ["MINIDIFF_FAST"] = "1"
    try:
        execute_notebook(nb, str(cwd or _project_root()), timeout=timeout, allow_errors=True)
    except (CellTimeoutError, DeadKernelError):
        pass  # the cells that ran keep their outputs; the rest are "not reached"
    finally:
        if fast:
            if old is None:
                os.environ.pop("MINIDIFF_FAST", None)
            else:
                os.environ["MINIDIFF_FAST"] = old
    return rows_from_executed(nb, student, lesson)


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_submissions(paths: list[str]) -> list[tuple[str, Path]]:
    """(student, notebook) pairs: files as given (student = the file's folder name if it is not the current one,
    else the file name); folders searched recursively, student = the first folder under the one given, or the file
    name for notebooks directly inside it."""
    found: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for nb in sorted(p.rglob("*.ipynb")):
                if ".ipynb_checkpoints" in nb.parts:
                    continue
                rel = nb.relative_to(p)
                found.append((rel.parts[0] if len(rel.parts) > 1 else nb.stem, nb))
        elif p.suffix == ".ipynb" and p.exists():
            found.append((p.parent.name if p.parent.name not in ("", ".") else p.stem, p))
        else:
            raise FileNotFoundError(f"{p} is neither a notebook (.ipynb) nor a folder")
    if not found:
        raise FileNotFoundError(f"no notebooks (.ipynb) in {', '.join(paths)}")
    return found


def scores(rows: list[Row]) -> dict[str, tuple[int, int]]:
    """student -> (exercises passed, exercises graded); a project "not graded" (fast mode) is not counted."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        if r.status == "not graded":
            out.setdefault(r.student, (0, 0))
            continue
        p, n = out.get(r.student, (0, 0))
        out[r.student] = (p + (r.status == "passed"), n + 1)
    return out


def format_table(rows: list[Row]) -> str:
    """A plain-text table (no colour codes), then one score line per student."""
    head = ("student", "lesson", "exercise", "status", "detail")
    data = [(r.student, r.lesson, r.exercise, r.status, r.detail) for r in rows]
    widths = [max(len(h), *(len(d[k]) for d in data)) if data else len(h) for k, h in enumerate(head[:-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head[:-1], widths, strict=True)) + "  " + head[-1]]
    for d in data:
        lines.append("  ".join(v.ljust(w) for v, w in zip(d[:-1], widths, strict=True)) + "  " + d[-1])
    lines.append("")
    for student, (p, n) in scores(rows).items():
        lines.append(f"{student}: {p}/{n} passed")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str | Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(Row.__dataclass_fields__))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))


def write_json(rows: list[Row], path: str | Path) -> None:
    out = {"rows": [asdict(r) for r in rows],
           "scores": {s: {"passed": p, "graded": n} for s, (p, n) in scores(rows).items()}}
    Path(path).write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(paths: list[str], csv_path: str | None = None, json_path: str | None = None, timeout: int = 300,
         fast: bool = True) -> int:
    """The `grade` command: 0 when everything could be graded (whatever the scores), 2 when something could not."""
    import sys

    from tqdm.auto import tqdm

    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        print(f"error: --timeout must be a whole number of seconds >= 1, got {timeout!r}", file=sys.stderr)
        return 2
    try:
        subs = find_submissions(paths)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    failed = []
    for student, nb in tqdm(subs, desc="grading", disable=len(subs) < 2):
        try:
            rows += grade_notebook(nb, student, timeout=timeout, fast=fast)
        except ValueError as e:
            failed.append(str(e))
    print(format_table(rows))
    try:
        if csv_path:
            write_csv(rows, csv_path)
        if json_path:
            write_json(rows, json_path)
    except OSError as e:  # the table is printed above, so no grading is lost
        print(f"error: could not write the gradebook file ({e}); the table above is complete", file=sys.stderr)
        return 2
    for f in failed:
        print(f"could not grade: {f}", file=sys.stderr)
    return 2 if failed else 0
