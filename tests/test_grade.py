"""`python -m minidiff.exercises grade` on a folder of generated lesson-01 submissions: right, wrong, unsolved, a
syntax error, and right answers with stale stored errors. Also: the pytest route no longer fails a right answer
whose check cell still shows an old error."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from minidiff import exercises as ex
from minidiff.exercises.grade import rows_from_executed

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "01_forward_noising.ipynb"
EXERCISES = ["forward_step", "linear_schedule", "cosine_schedule", "closed_form_coefficients", "q_sample"]


def _stale_error(nb):
    """Every check cell shows the error of an earlier, unsolved run (what a student who fixed the answer but did not
    re-run the check cell hands in)."""
    for c in nb.cells:
        if c.cell_type == "code" and "check" in c.metadata.get("tags", []):
            c.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue="forward_step is still the stub",
                                                traceback=["CheckFailed: still the stub"])]
            c.execution_count = 3
    return nb


def _submissions(folder: Path) -> None:
    lesson = nbformat.read(str(LESSON), as_version=4)
    student = ex.build_student_notebook(lesson)
    wrong = nbformat.read(str(LESSON), as_version=4)
    for c in wrong.cells:  # the noise scaled by beta_t instead of sqrt(beta_t)
        c.source = c.source.replace("+ beta_t ** 0.5 * noise", "+ beta_t * noise")
    syntax = nbformat.read(str(LESSON), as_version=4)
    for c in syntax.cells:
        if c.cell_type == "code" and "def linear_beta_schedule" in c.source:
            c.source = c.source.replace("beta_end, T)", "beta_end,")  # an unclosed bracket
    for name, nb in (("right", lesson), ("wrong", wrong), ("unsolved", student), ("syntax", syntax),
                     ("stale", _stale_error(nbformat.read(str(LESSON), as_version=4)))):
        (folder / name).mkdir()
        nbformat.write(nb, str(folder / name / LESSON.name))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    _submissions(folder)
    out = folder / "grades.csv"
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "grade", str(folder), "--csv", str(out),
                        "--json", str(folder / "grades.json"), "--timeout", "240"],
                       capture_output=True, text=True, cwd=ROOT, timeout=1200)
    return r, list(csv.DictReader(out.open())), json.loads((folder / "grades.json").read_text())


def test_grade_exits_0_and_prints_one_row_per_student_and_exercise(graded):
    r, rows, _ = graded
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(rows) == 5 * len(EXERCISES)
    assert "\x1b[" not in r.stdout  # no colour codes in the table
    for line in ("right: 5/5 passed", "wrong: 4/5 passed", "unsolved: 0/5 passed", "syntax: 4/5 passed",
                 "stale: 5/5 passed"):
        assert line in r.stdout, r.stdout


def test_grade_statuses_and_details(graded):
    _, rows, report = graded
    got = {(row["student"], row["exercise"]): (row["status"], row["detail"]) for row in rows}
    assert [got[("right", e)][0] for e in EXERCISES] == ["passed"] * 5
    assert [got[("stale", e)][0] for e in EXERCISES] == ["passed"] * 5  # outputs are stripped before running
    assert got[("wrong", "forward_step")][0] == "wrong"
    assert "sqrt(beta_t), not beta_t" in got[("wrong", "forward_step")][1]
    assert {got[("unsolved", e)][0] for e in EXERCISES} == {"unsolved"}
    status, detail = got[("syntax", "linear_schedule")]
    assert status == "error" and detail.startswith("SyntaxError in cell")
    assert got[("syntax", "forward_step")][0] == "passed"
    assert report["scores"]["wrong"] == {"passed": 4, "graded": 5}


def test_grade_refuses_what_it_cannot_grade(tmp_path):
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "grade", str(tmp_path / "nothing")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "neither a notebook" in r.stderr
    r = subprocess.run([sys.executable, "-m", "minidiff.exercises", "grade", str(LESSON), "--timeout", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--timeout must be" in r.stderr


def test_a_check_that_never_ran_is_not_reached():
    nb = nbformat.read(str(LESSON), as_version=4)
    nb = ex.build_student_notebook(nb)
    rows = rows_from_executed(nb, "x", "01")
    assert [r.status for r in rows] == ["not reached"] * 5 and [r.exercise for r in rows] == EXERCISES


def test_pytest_route_passes_a_right_answer_with_a_stale_error_output(tmp_path):
    nb = _stale_error(nbformat.read(str(LESSON), as_version=4))
    path = tmp_path / LESSON.name
    nbformat.write(nb, str(path))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                        "-c", str(ROOT / "pyproject.toml"), str(path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
