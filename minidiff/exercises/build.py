"""The student notebooks: built from the lessons (solutions stripped, outputs cleared), and a notebook runner.

    python -m minidiff.exercises build    # rewrite notebooks/exercises/ from notebooks/
    python -m minidiff.exercises check    # exit 1 if they are out of date
    python -m minidiff.exercises nbgrader COURSE_DIR   # the lessons as an nbgrader course (nbgrader_source.py)
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Any

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError()"
STUDENT_NOTE = (
    "> **Student version.** Fill in each cell marked `# YOUR CODE HERE` (delete the `raise NotImplementedError()`),\n"
    "> then run the check cell below it: it prints ✅ or tells you what is wrong. The lesson always goes on with\n"
    "> minidiff's own version of each piece, so you can skip an exercise and still run the whole notebook."
)


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region by `# YOUR CODE HERE` + `raise NotImplementedError()`, same indent."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested '### BEGIN SOLUTION'")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + "# YOUR CODE HERE", indent + STUB]
        elif stripped == END:
            if not inside:
                raise ValueError("'### END SOLUTION' without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("'### BEGIN SOLUTION' without an END")
    return "\n".join(out)


def build_student_notebook(nb, source: str = "the notebook"):  # nbformat.NotebookNode -> NotebookNode
    """The student version of a lesson notebook: solutions stripped, outputs cleared, a note on top. A marker error
    names `source` (the notebook's path) and the cell."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell.pop("id", None)
        if cell.cell_type == "code":
            try:
                cell.source = strip_solutions(cell.source)
            except ValueError as e:
                first = cell.source.strip().split("\n", 1)[0][:60]
                raise ValueError(f"{source}, cell {i} (code cell starting {first!r}): {e}; every "
                                 f"'{BEGIN}' needs its '{END}' in the same cell") from None
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


def _poll_in_slices(channel: Any, interval: float) -> None:
    """Make channel.get_msg(timeout) wait in slices of `interval` seconds instead of one long wait."""
    import inspect
    import time
    from queue import Empty

    original = channel.get_msg

    async def get_msg(timeout: float | None = None, **kw: Any) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = interval if deadline is None else max(0.0, min(interval, deadline - time.monotonic()))
            try:
                msg = original(timeout=step, **kw)
                return await msg if inspect.isawaitable(msg) else msg
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    channel.get_msg = get_msg


def execute_notebook(nb, cwd: str, timeout: int | None = None, allow_errors: bool = False):
    """Execute a notebook (nbformat.NotebookNode, in place) in a fresh kernel with nbclient; returns it.

    The kernel's reply and output channels are polled in 1-second slices rather than with one long wait. We saw rare
    stalls right after widget cells in which the kernel was idle, its reply already sent, and the client still
    waiting (cf. jupyter/nbclient#312); a fresh poll picks up a message a long wait has missed.
    """
    from nbclient import NotebookClient

    class _Client(NotebookClient):
        async def async_start_new_kernel_client(self):  # type: ignore[override]
            kc = await super().async_start_new_kernel_client()
            _poll_in_slices(self.kc.shell_channel, 1.0)
            _poll_in_slices(self.kc.iopub_channel, 1.0)
            return kc

    client = _Client(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors,
                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def lesson_notebooks(root: str = "notebooks") -> list[str]:
    return sorted(p for p in glob.glob(os.path.join(root, "[0-9][0-9]_*.ipynb")))


def student_text(lesson_path: str) -> str:
    import nbformat

    try:
        nb = nbformat.read(lesson_path, as_version=4)
    except Exception as e:  # not JSON, or not a notebook
        raise ValueError(f"{lesson_path} is not a readable notebook ({type(e).__name__}: {str(e)[:200]})") from None
    return nbformat.writes(build_student_notebook(nb, lesson_path), version=4) + "\n"


def build(root: str = "notebooks", check_only: bool = False) -> list[str]:
    """Write (or, with check_only, compare) notebooks/exercises/NN_*.ipynb; return the paths that differ."""
    out_dir = os.path.join(root, "exercises")
    os.makedirs(out_dir, exist_ok=True)
    differ = []
    for path in lesson_notebooks(root):
        target = os.path.join(out_dir, os.path.basename(path))
        text = student_text(path)
        old = open(target, encoding="utf-8").read() if os.path.exists(target) else None
        if old != text:
            differ.append(target)
            if not check_only:
                with open(target, "w", encoding="utf-8") as f:
                    f.write(text)
    return differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidiff.exercises",
                                description="Build or check the student notebooks, or grade submissions.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("build", "write notebooks/exercises/ from the lessons"),
                       ("check", "exit 1 if the student notebooks are out of date")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--root", default="notebooks", help="folder with the lesson notebooks (default: notebooks)")
    g = sub.add_parser("grade", help="run submissions in fresh kernels and print a row per exercise",
                       description="Grade student notebooks: one row per (student, exercise).")
    g.add_argument("paths", nargs="+", help="submitted notebooks, or folders of them (one subfolder per student)")
    g.add_argument("--csv", default=None, metavar="FILE", help="also write the rows as CSV")
    g.add_argument("--json", default=None, metavar="FILE", help="also write the rows and scores as JSON")
    g.add_argument("--timeout", type=int, default=300, help="seconds per cell before the rest is 'not reached'")
    g.add_argument("--full", action="store_true",
                   help="run trainings at the learners' budgets (default: the test budgets, MINIDIFF_FAST=1)")
    n = sub.add_parser("nbgrader", help="write the lessons as an nbgrader course (source/ with nbgrader metadata)",
                       description="Write COURSE_DIR/source/NN_name/NN_name.ipynb for nbgrader's generate_assignment.")
    n.add_argument("course_dir", help="the nbgrader course folder (it gets a source/ subfolder)")
    n.add_argument("--lessons", nargs="*", default=None, metavar="NN", help="lesson numbers (default: all)")
    n.add_argument("--root", default="notebooks", help="folder with the lesson notebooks (default: notebooks)")
    a = p.parse_args(argv)
    if a.command == "nbgrader":
        from .nbgrader_source import write_course

        if not lesson_notebooks(a.root):
            print(f"no lesson notebooks (NN_*.ipynb) in {a.root!r}; run this from the project root", file=sys.stderr)
            return 2
        known = sorted(os.path.basename(p)[:2] for p in lesson_notebooks(a.root))
        unknown = [n for n in a.lessons or [] if n not in known]
        if unknown:
            print(f"no lesson numbered {', '.join(unknown)}; the lessons are {' '.join(known)}", file=sys.stderr)
            return 2
        if os.path.exists(a.course_dir) and not os.path.isdir(a.course_dir):
            print(f"{a.course_dir!r} is a file; give a folder for the nbgrader course", file=sys.stderr)
            return 2
        try:
            written = write_course(a.course_dir, a.root, a.lessons)
        except (OSError, ValueError) as e:  # an unwritable folder, or a lesson nbgrader would misread
            print(f"error: {e}", file=sys.stderr)
            return 2
        for target in written:
            print(f"wrote {target}")
        return 0
    if a.command == "grade":
        from .grade import main as grade_main

        return grade_main(a.paths, a.csv, a.json, a.timeout, fast=not a.full)
    if not lesson_notebooks(a.root):
        print(f"no lesson notebooks (NN_*.ipynb) in {a.root!r}; run this from the project root", file=sys.stderr)
        return 2
    try:
        differ = build(a.root, check_only=a.command == "check")
    except ValueError as e:  # a solution marker without its pair, or a broken notebook: say where
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.command == "check":
        for d in differ:
            print(f"out of date: {d} (run: python -m minidiff.exercises build)")
        return 1 if differ else 0
    for d in differ:
        print(f"wrote {d}")
    if not differ:
        print("student notebooks already up to date")
    return 0

