"""The lessons run to the end under the executors instructors use: `jupyter nbconvert --to notebook --execute`
(nbclient, which papermill and nbgrader's autograder also use), not only under nbval and the project's own runner.
The widget-heavy lessons are the ones that used to stall there: the capstone's student version runs to the end
(with --allow-errors, as its unsolved check cells raise), widgets and all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _nbconvert(notebook: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINIDIFF_FAST": "1"}
    return subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                           str(notebook), "--output", str(out), "--ExecutePreprocessor.timeout=300", *extra],
                          capture_output=True, text=True, cwd=notebook.parent, env=env, timeout=900)


def test_nbconvert_execute_runs_the_capstones_student_version_to_the_end(tmp_path):
    """One run proves both: the widget-heaviest lesson (08: the prompt playground, the attention and trajectory
    widgets) runs to the end under nbconvert, and so does a student version, where only the unsolved checks fail."""
    out = tmp_path / "student.ipynb"
    r = _nbconvert(ROOT / "notebooks" / "exercises" / "08_mmdit_text_to_video.ipynb", out, "--allow-errors")
    assert r.returncode == 0, r.stderr[-3000:]
    nb = json.loads(out.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code)
    errors = [o["ename"] for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert errors and set(errors) == {"CheckFailed"}  # only the unsolved checks fail
    widgets = [o for c in code for o in c["outputs"] if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "no widget was built: the run did not reach the widget cells"


def test_widget_cells_never_make_nbclient_send_on_the_shell_channel():
    """What changed for the standard executors. nbclient mimics the front end of an Output widget: when a cell
    captures output into one (`with out:`), nbclient registers an output hook and, for every captured output, sends a
    comm_msg back to the kernel on the shell socket — the socket on which it is at the same moment waiting for that
    cell's execute_reply. That concurrent send is what the old widget cells made nbclient do and no other cell does,
    and the stalls (kernel idle, reply sent, client waiting) came right after widget cells; whether it is the whole
    cause is not proven (an isolated pyzmq reproduction lost no reply). The course's widgets now set `Output.outputs`
    directly, so nbclient never registers a hook nor sends: counted here on a cell that builds a widget and moves its
    slider, against a control cell that uses `with out:` (so the count can fail)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    counts = {"hooks": [], "sends": []}

    class Counting(NotebookClient):
        def register_output_hook(self, msg_id, hook):
            counts["hooks"].append(self.code_cells_executed)
            super().register_output_hook(msg_id, hook)

    original = OutputWidget._publish_msg

    def publish(self, *a, **kw):
        counts["sends"].append(self.executor.code_cells_executed)
        return original(self, *a, **kw)

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from minidiff.data import load_photo\n"
                                  "from minidiff.widgets import noising_explorer\n"
                                  "w = noising_explorer(load_photo(32), T=100)\ndisplay(w)\n"
                                  "w.children[0].children[0].value = 50"),
        nbformat.v4.new_code_cell("import ipywidgets as W\nout = W.Output()\ndisplay(out)\nwith out:\n"
                                  "    print('captured')")])
    OutputWidget._publish_msg = publish
    try:
        Counting(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    finally:
        OutputWidget._publish_msg = original
    assert "captured" not in str(nb.cells[1].outputs)  # it went into the widget, as in a browser
    assert [c for c in counts["hooks"] if c == 1] == [] and [c for c in counts["sends"] if c == 1] == []
    assert [c for c in counts["hooks"] if c == 2] and [c for c in counts["sends"] if c == 2]
