"""The student notebooks, built from the lessons: solutions stripped, outputs cleared.

    python -m minidiff.exercises build    # rewrite notebooks/exercises/ from notebooks/
    python -m minidiff.exercises check    # exit 1 if they are out of date
    python -m minidiff.exercises nbgrader COURSE_DIR   # the lessons as an nbgrader course (nbgrader_source.py)
"""

from __future__ import annotations

import glob
import os

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
