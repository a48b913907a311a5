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


STILL_NOTE = "**Reading without a running kernel?**"
WIDGET_BUILDERS = ("noising_explorer(", "reverse_chain_explorer(", "ddim_explorer(", "flow_particles_explorer(",
                   "patch_explorer(", "cfg_explorer(", "latent_explorer(", "prompt_search(", "prompt_playground(")


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_every_widget_is_followed_by_a_note_and_a_still_for_readers_without_a_kernel(nb):
    """Where widgets cannot run (an untrusted copy, a web viewer), the reader still gets the picture: every cell
    that builds a widget is followed by the same one-line note and a code cell whose saved output is a figure."""
    cells = json.loads(nb.read_text())["cells"]
    for i, c in enumerate(cells):
        src = "".join(c["source"])
        if c["cell_type"] != "code" or not any(f"\n{b}" in "\n" + src or f"= {b}" in src for b in WIDGET_BUILDERS):
            continue
        note, still = cells[i + 1], cells[i + 2]
        assert note["cell_type"] == "markdown" and "".join(note["source"]).startswith(STILL_NOTE), \
            f"{nb.name}, cell {i}: a widget not followed by the note for readers without a kernel"
        assert still["cell_type"] == "code" and any("image/png" in o.get("data", {}) for o in still["outputs"]), \
            f"{nb.name}, cell {i + 2}: the still after the widget has no saved figure"


def test_the_widget_list_above_finds_every_widget_the_lessons_build():
    builders = {b for nb in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") for b in WIDGET_BUILDERS
                if b in nb.read_text()}
    assert builders == set(WIDGET_BUILDERS)


NOTATION_SYMBOLS = [r"$T$", r"$F$", r"$\beta_t$", r"$\kappa_t$", r"$v^\text{diff}$", r"$\gamma$", r"$\lambda$",
                    r"$w$", r"$w_\text{KL}$", r"$s_\theta(x, t)$"]


def test_readme_has_one_notation_table_and_every_lesson_links_it():
    readme = (ROOT / "README.md").read_text()
    assert "\n## Notation\n" in readme
    table = readme.split("\n## Notation\n", 1)[1]
    missing = [s for s in NOTATION_SYMBOLS if f"| {s}" not in table]
    assert not missing, f"the README's notation table lacks {missing}"
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        first = "".join(json.loads(nb.read_text())["cells"][0]["source"])
        assert "../README.md#notation" in first, f"{nb.name}: the first cell does not link the notation table"


@pytest.mark.parametrize("nb", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_lessons_cite_what_a_learner_can_open(nb):
    """Lessons cite papers, posts and files, never documents the learner does not have."""
    import re

    text = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown")
    bad = re.findall(r"(?i)\b(?:source texts?|seed texts?|the seeds\b|course notes|\.\./shared)", text)
    assert not bad, f"{nb.name} cites {bad}: cite the paper, post or file instead"


def _package_imports() -> dict[str, set[str]]:
    """minidiff module -> the minidiff modules it imports, at the top or inside a function."""
    import ast

    pkg = ROOT / "minidiff"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]  # the package of relative imports
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{base}.{node.module}" if node.level and node.module else (base if node.level else
                                                                                       node.module or "")
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def test_the_package_imports_have_no_cycle():
    """Imports run one way (minidiff/__init__.py lists the layers): no module reaches itself through its imports."""
    graph = _package_imports()
    assert graph["minidiff.flow"] >= {"minidiff.checks", "minidiff.sampling"}  # the graph is read, not empty
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:  # n is on the path that led here
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_function_in_the_package_is_longer_than_a_screen():
    """A reader sees a whole function at once: none in minidiff/ is over 80 lines (signature and docstring count)."""
    import ast

    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in sorted((ROOT / "minidiff").rglob("*.py")) for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 80]
    assert not long, long
