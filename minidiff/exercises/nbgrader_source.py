"""The lessons as an nbgrader course: the same solution markers, plus the cell metadata nbgrader reads.

    python -m minidiff.exercises nbgrader COURSE_DIR [--lessons 01 04]

writes COURSE_DIR/source/NN_name/NN_name.ipynb for each lesson. nbgrader (jupyter/nbgrader) already uses our markers:
its `generate_assignment` replaces each `### BEGIN SOLUTION ... ### END SOLUTION` region by `# YOUR CODE HERE` and
`raise NotImplementedError()`, exactly what `build` does. What it needs besides is cell metadata: each answer cell is
a "solution" cell, each check cell an autograded "test" cell worth one point (it passes when it does not raise, and
our checks raise CheckFailed on a wrong answer), locked so a student's edit of it is detected.
"""

from __future__ import annotations

import copy
import os
import re

SCHEMA_VERSION = 3


def _check_name(source: str) -> str | None:
    m = re.search(r"\b(check_\w+)\(", source)
    return m.group(1) if m else None


def nbgrader_notebook(nb, lesson: str):  # nbformat.NotebookNode -> NotebookNode
    """A copy of a lesson with nbgrader metadata: answer cells `solution`, check cells `grade` (1 point, locked).
    Outputs are cleared; grade ids are unique within the notebook (nbgrader requires it)."""
    from .build import BEGIN, STUDENT_NOTE

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    seen: set[str] = set()

    def unique(base: str) -> str:
        gid, k = base, 2
        while gid in seen:
            gid, k = f"{base}-{k}", k + 1
        seen.add(gid)
        return gid

    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("nbgrader", None)
        if cell.cell_type != "code":
            if "BEGIN SOLUTION" in cell.source or "END SOLUTION" in cell.source:
                # nbgrader treats any line containing these words as a marker, in text cells too
                raise ValueError(f"{lesson}: cell {i} ({cell.cell_type}) mentions a solution marker; nbgrader would "
                                 "read it as one. Reword it.")
            continue
        cell.outputs, cell.execution_count = [], None
        if BEGIN in cell.source:
            m = re.search(r"^def (\w+)\(", cell.source, flags=re.M)
            cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "task": False,
                                         "grade_id": unique(f"{lesson}-{m.group(1) if m else f'cell{i}'}"),
                                         "schema_version": SCHEMA_VERSION}
        elif {"check", "project"} & set(cell.metadata.get("tags", [])):  # a project's check is worth 3 points
            points = 3 if "project" in cell.metadata.get("tags", []) else 1
            cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "task": False,
                                         "points": points,
                                         "grade_id": unique(f"{lesson}-{_check_name(cell.source) or i}"),
                                         "schema_version": SCHEMA_VERSION}
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_markdown_cell(STUDENT_NOTE))
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat, nb.nbformat_minor = 4, 4
    return nb


CONFIG = """\
# nbgrader configuration for the minidiff lessons (written by `python -m minidiff.exercises nbgrader`).
import os

c = get_config()  # noqa: F821 - nbgrader provides it
c.CourseDirectory.root = {root!r}
c.ExecutePreprocessor.timeout = 300  # seconds per cell; the lessons' trainings take up to ~70 s at the test budgets
# Autograde at the test budgets (fewer training steps, as `python -m minidiff.exercises grade` does); the kernels
# nbgrader starts inherit this. Delete the line to grade at the learners' budgets.
os.environ.setdefault("MINIDIFF_FAST", "1")
"""


def write_course(course_dir: str, root: str = "notebooks", lessons: list[str] | None = None) -> list[str]:
    """Write COURSE_DIR/source/<lesson>/<lesson>.ipynb for each lesson (all, or those whose number is in `lessons`),
    and COURSE_DIR/nbgrader_config.py unless there is one."""
    import nbformat

    from .build import lesson_notebooks

    written = []
    os.makedirs(course_dir, exist_ok=True)
    config = os.path.join(course_dir, "nbgrader_config.py")
    if not os.path.exists(config):
        with open(config, "w", encoding="utf-8") as f:
            f.write(CONFIG.format(root=os.path.abspath(course_dir)))
        written.append(config)
    for path in lesson_notebooks(root):
        name = os.path.splitext(os.path.basename(path))[0]
        if lessons and name[:2] not in lessons:
            continue
        nb = nbgrader_notebook(nbformat.read(path, as_version=4), name)
        folder = os.path.join(course_dir, "source", name)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, name + ".ipynb")
        nbformat.write(nb, target)
        written.append(target)
    return written
