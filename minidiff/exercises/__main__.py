"""python -m minidiff.exercises build|check|grade|nbgrader: the student notebooks, grading, the nbgrader course."""

from __future__ import annotations

import argparse
import os
import sys

from .build import build, lesson_notebooks


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


if __name__ == "__main__":
    sys.exit(main())
