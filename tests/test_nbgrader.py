"""nbgrader itself grades a lesson: `python -m minidiff.exercises nbgrader` writes the course's source folder,
`nbgrader generate_assignment` strips the same solution markers as our builder, and `nbgrader autograde` scores the
check cells (one point each) of a right, a wrong and an unsolved submission."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minidiff import exercises as ex

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01_forward_noising"
N_CHECKS = sum("check" in c.metadata.get("tags", []) for c in nbformat.read(
    str(ROOT / "notebooks" / f"{LESSON}.ipynb"), as_version=4).cells)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MINIDIFF_FAST"}  # the course's config sets it for nbgrader
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def _nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "nbgrader", *args], cwd)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    course = tmp_path_factory.mktemp("course")
    _run([sys.executable, "-m", "minidiff.exercises", "nbgrader", str(course), "--lessons", LESSON[:2]], ROOT)
    _nbgrader("generate_assignment", LESSON, "--force", cwd=course)
    return course


def test_the_source_notebook_has_nbgrader_metadata_on_answer_and_check_cells(course):
    nb = nbformat.read(str(course / "source" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    meta = [c.metadata.get("nbgrader") for c in nb.cells if "nbgrader" in c.metadata]
    graded = [m for m in meta if m["grade"]]
    assert len(graded) == N_CHECKS and all(m["points"] == 1 and m["locked"] for m in graded)
    assert len([m for m in meta if m["solution"]]) == N_CHECKS
    assert len({m["grade_id"] for m in meta}) == len(meta)  # nbgrader needs unique ids


def test_generate_assignment_gives_the_same_stubs_as_our_student_version(course):
    release = nbformat.read(str(course / "release" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    ours = ex.build_student_notebook(nbformat.read(str(ROOT / "notebooks" / f"{LESSON}.ipynb"), as_version=4))
    mine = [c.source for c in release.cells if c.cell_type == "code"]
    assert not any(ex.BEGIN in s for s in mine)
    assert mine == [c.source for c in ours.cells if c.cell_type == "code"]


def test_every_lesson_exports_and_a_marker_in_text_is_refused(tmp_path):
    from minidiff.exercises.nbgrader_source import nbgrader_notebook, write_course

    written = write_course(str(tmp_path), str(ROOT / "notebooks"))
    assert len(written) == 1 + len(ex.lesson_notebooks(str(ROOT / "notebooks"))) >= 9  # the config and 8 lessons
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Write in the `### BEGIN SOLUTION` region")])
    with pytest.raises(ValueError, match="cell 0 .markdown. mentions a solution marker"):
        nbgrader_notebook(nb, "99_x")


def _submission(course: Path, student: str, nb) -> None:
    folder = course / "submitted" / student / LESSON
    folder.mkdir(parents=True)
    nbformat.write(nb, str(folder / f"{LESSON}.ipynb"))


def test_autograde_scores_right_wrong_and_unsolved(course):
    from nbgrader.api import Gradebook

    release = nbformat.read(str(course / "release" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    source = nbformat.read(str(course / "source" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    answers = {c.metadata.nbgrader.grade_id: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}

    def solved(wrong: bool = False):
        nb = nbformat.from_dict(release)
        for c in nb.cells:
            if c.metadata.get("nbgrader", {}).get("solution"):
                c.source = answers[c.metadata.nbgrader.grade_id]
                if wrong:  # the noise scaled by beta_t instead of sqrt(beta_t)
                    c.source = c.source.replace("+ beta_t ** 0.5 * noise", "+ beta_t * noise")
        return nb

    assert any("beta_t ** 0.5 * noise" in s for s in answers.values())
    _submission(course, "right", solved())
    _submission(course, "wrong", solved(wrong=True))
    _submission(course, "unsolved", release)
    _nbgrader("autograde", LESSON, "--force", cwd=course)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        scores = {s: gb.find_submission(LESSON, s).score for s in ("right", "wrong", "unsolved")}
        assert gb.find_assignment(LESSON).max_score == N_CHECKS
    assert scores == {"right": N_CHECKS, "wrong": N_CHECKS - 1, "unsolved": 0}, scores
    graded = nbformat.read(str(course / "autograded" / "right" / LESSON / f"{LESSON}.ipynb"), as_version=4)
    first = next(c for c in graded.cells if c.cell_type == "code")
    assert "fast mode: True" in "".join(o.get("text", "") for o in first.outputs)  # the course config's test budgets


def test_the_export_command_refuses_an_unknown_lesson_and_a_file_as_course(tmp_path):
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "nbgrader", str(tmp_path / "c"), "--lessons", "99"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "no lesson numbered 99" in r.stderr and not (tmp_path / "c").exists()
    (tmp_path / "f").write_text("x")
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "nbgrader", str(tmp_path / "f")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "is a file" in r.stderr
