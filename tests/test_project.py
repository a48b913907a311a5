"""Project hygiene: lint, the README's test command is what CI runs, lessons declare their run time."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    r = subprocess.run([ruff, "check", "minidiff", "tests", "benchmarks", "conftest.py"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    cmd = next(line.strip() for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")
               and "echo" not in line)
    assert f"`{cmd}`" in readme or f"\n{cmd}\n" in readme, f"README does not give CI's test command: {cmd}"


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_lesson_states_its_cpu_time_and_has_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    first = "".join(cells[0]["source"])
    assert "Time on a laptop CPU" in first
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "commit lessons with outputs (run them fully)"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
