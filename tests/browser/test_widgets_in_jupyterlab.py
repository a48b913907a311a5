"""The lessons as a learner meets them: JupyterLab in a real browser, the lesson run through its last widget, then
every widget's every control moved.

JupyterLab runs on 127.0.0.1 with a token, on a temporary copy of the lessons (so nothing can overwrite them), with its
own config, data, runtime, settings and workspace folders, news and update checks off, autosave off and the notebook
drawn whole (windowing off: JupyterLab 4 otherwise leaves off-screen cells empty). The kernel runs in fast mode.
Playwright drives Chromium (Debian's, or one that `playwright install chromium` fetched).

For every widget the test moves each control (slider: one step with the arrow keys; dropdown: another option;
toggle buttons: another button; text box: a new prompt, then one with an unknown word), and asserts that the
picture changed, that no error appeared (in the widget, in the cell, in the page), and that an unknown word shows
its message. The time from the key press or click to the first new picture ("seconds": a widget that previews
shows its coarse version first) and to the final one, when its busy sign goes ("final_seconds"), is written, per
control, to
test-artifacts/browser/widget_latency.json (and, with MINIDIFF_WIDGET_LATENCY=1, appended to
benchmarks/results/widget_latency.json: `benchmarks/widget_latency.py` does that), with a screenshot of every state
in test-artifacts/browser/.

Without Chromium or Playwright the test skips and says how to enable it; with MINIDIFF_REQUIRE_BROWSER=1 (CI sets
it) it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"

# lesson -> the widget cells, found by the call in their source
WIDGETS = {
    "01_forward_noising": ["noising_explorer(photo)"],
    "02_ddpm": ["reverse_chain_explorer(trajectory"],
    "03_ddim": ["ddim_explorer(model"],
    "04_flow_matching": ["flow_particles_explorer(traj"],
    "05_dit": ["patch_explorer(photo)", "cfg_explorer(dit_model"],
    "06_vae": ["latent_explorer(vae"],
    "07_text_conditioning": ["prompt_search(clip"],
    "08_mmdit_text_to_video": ["prompt_playground(pipe"],
    "09_after_training": ["sdedit_explorer(teacher"],
}
GOOD_PROMPT, UNKNOWN_PROMPT = "a blue 7 moving down", "a purple 7"
LESSON_TIMEOUT_S = 900
REPEATS = int(os.environ.get("MINIDIFF_WIDGET_REPEATS", "1"))  # moves per control (back and forth); the benchmark: 3
PICTURE_TIMEOUT_S = 120

OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {"checkForUpdates": False, "fetchNews": "false"},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
HOW_TO_ENABLE = ("install a browser and Playwright to run it: `sudo apt-get install chromium` (Debian/Ubuntu; or "
                 "`python -m playwright install chromium`) and `pip install playwright`; "
                 "MINIDIFF_CHROMIUM=/path/to/chrome picks another Chromium")


def _unavailable(why: str):
    if os.environ.get("MINIDIFF_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (MINIDIFF_REQUIRE_BROWSER=1) but {why}; {HOW_TO_ENABLE}")
    pytest.skip(f"browser test skipped: {why}; {HOW_TO_ENABLE}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on a temporary copy of the lessons, and its REST API."""

    def __init__(self, base: Path):
        self.token, self.port = uuid.uuid4().hex, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root = base / "lessons"
        shutil.copytree(ROOT / "notebooks", self.root, ignore=shutil.ignore_patterns("exercises", ".ipynb_checkpoints"))
        settings = base / "app-settings"
        settings.mkdir()
        (settings / "overrides.json").write_text(json.dumps(OVERRIDES))
        env = dict(os.environ, MINIDIFF_FAST="1", PYTHONUNBUFFERED="1")
        for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                    "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            (base / var.lower()).mkdir()
            env[var] = str(base / var.lower())
        self.log = open(base / "jupyterlab.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.allow_root=True", "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
             "--LabApp.expose_app_in_browser=True", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             f"--LabApp.app_settings_dir={settings}"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("GET", "/api/status")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"JupyterLab did not start; its log: {(base / 'jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.url + path, method=method, headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def shut_down_kernels(self) -> None:
        for s in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{s['id']}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed")
    exe = os.environ.get("MINIDIFF_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else pw.chromium.launch(
            args=CHROMIUM_ARGS)
    except Exception as e:  # no system Chromium and none fetched by Playwright
        pw.stop()
        _unavailable(f"no Chromium could be started ({str(e).splitlines()[0]})")
    yield b
    b.close()
    pw.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):
    server = Lab(tmp_path_factory.mktemp("jupyterlab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def latency_log():
    records: list[dict] = []
    yield records
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "widget_latency.json").write_text(json.dumps(records, indent=1))
    if os.environ.get("MINIDIFF_WIDGET_LATENCY") == "1" and records:
        import datetime

        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _results import append_records

        today = datetime.date.today().isoformat()
        append_records("widget_latency", [dict(r, date=today) for r in records])


# ------------------------------------------------------------------------------------------------ page helpers

JS_STATE = """(limit) => {
  const p = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!p || !p.content || !p.sessionContext) return null;
  const kernel = p.sessionContext.session && p.sessionContext.session.kernel;
  let pending = 0, code = 0; const errors = [];
  for (const [i, c] of p.content.widgets.entries()) {
    if (limit != null && i >= limit) break;
    if (c.model.type !== 'code') continue;
    code++;
    if (c.model.executionCount === null) pending++;
    for (const o of c.model.outputs.toJSON())
      if (o.output_type === 'error') errors.push(`${o.ename}: ${o.evalue}`);
  }
  return {kernel: kernel ? kernel.status : 'none', pending, code, errors};
}"""

JS_MARK_CELL = """(marker) => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  const i = cells.findIndex(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(marker));
  if (i < 0) return -1;
  cells[i].node.setAttribute('data-minidiff-cell', String(i));
  cells[i].node.scrollIntoView();
  return i;
}"""


def _wait(cond, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


JS_LAST_CELL_WITH = """(markers) => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  let last = -1;
  cells.forEach((c, i) => {
    if (c.model.type === 'code' && markers.some(m => c.model.sharedModel.getSource().includes(m))) last = i;
  });
  return [last, cells.length];
}"""


def _run_through_last_widget(page, lesson: str) -> None:
    """Run the lesson from the top through its last widget's cell, as a learner would before playing with it (what
    comes after the widgets is nbval's to run, in tests/test_notebooks)."""
    state = _wait(lambda: (s := page.evaluate(JS_STATE)) and s["kernel"] == "idle" and s, 180,
                  f"{lesson}: the notebook to open and its kernel to start")
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    last, cells = page.evaluate(JS_LAST_CELL_WITH, WIDGETS[lesson])
    assert last >= 0, f"{lesson}: no code cell contains any of {WIDGETS[lesson]} (update WIDGETS in this test)"
    limit = min(last + 1, cells)
    if limit < cells:  # 'run all above' runs the cells before the active one
        page.evaluate("(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }", limit)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-above'); }")
    else:
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    def finished():
        s = page.evaluate(JS_STATE, limit)
        if s["errors"]:
            raise AssertionError(f"{lesson}: a cell failed: {s['errors'][0][:2000]}")
        return s["pending"] == 0 and s["kernel"] == "idle"

    time.sleep(2)
    _wait(finished, LESSON_TIMEOUT_S, f"{lesson}: the cells through the last widget to finish ({state['code']} code "
          f"cells in the lesson)", 1.0)


def _watch_requests(page) -> set[str]:
    """The addresses the page asks for that are not this JupyterLab (a CDN, a news feed): none may be needed."""
    from urllib.parse import urlparse

    elsewhere: set[str] = set()
    page.on("request", lambda r: urlparse(r.url).hostname not in ("127.0.0.1", None) and r.url.startswith("http")
            and elsewhere.add(r.url[:200]))
    return elsewhere


def _picture(cell):
    img = cell.locator(".widget-output img")
    return img.first.get_attribute("src") if img.count() else None


def _widget_text(cell) -> str:
    out = cell.locator(".widget-output")
    return out.first.inner_text() if out.count() else ""


def _await_new_picture(page, cell, before: str | None, what: str) -> float:
    """Seconds from now until the widget shows a picture other than `before`."""
    t0 = time.perf_counter()
    _wait(lambda: (src := _picture(cell)) is not None and src != before, PICTURE_TIMEOUT_S,
          f"{what}: a new picture (the widget's text: {_widget_text(cell)[:300]!r})", 0.02)
    return time.perf_counter() - t0


class Mover:
    """Moves one widget's controls and records what happened."""

    def __init__(self, page, cell, lesson: str, widget: str, log: list[dict], page_errors: list[str]):
        self.page, self.cell, self.lesson, self.widget, self.log = page, cell, lesson, widget, log
        self.page_errors, self.shots, self.round = page_errors, 0, 0

    def check_clean(self, what: str) -> None:
        text = _widget_text(self.cell)
        assert "⚠" not in text, f"{what}: the widget shows an error: {text[:500]}"
        assert not self.page_errors, f"{what}: the page raised: {self.page_errors}"
        s = self.page.evaluate(JS_STATE)
        assert not s["errors"], f"{what}: the cell shows an error: {s['errors']}"

    def shot(self, label: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.shots += 1
        self.cell.screenshot(path=str(ARTIFACTS / f"{self.lesson}-{self.widget}-{self.shots:02d}-{label}.png"))

    def act(self, control: str, action, label: str, moved=None) -> None:
        """Do `action` and time the widget's answer. `moved()` tells from the control's own page element that the
        browser took the input (a pressed toggle button, a slider handle at its new value): an input the browser
        dropped is given once more and recorded as retried; a taken input with no new picture fails the test."""
        before = _picture(self.cell)
        assert before, f"{self.lesson} {self.widget}: no picture before moving {control}"
        what = f"{self.lesson} {self.widget}, {control}"
        t0 = time.perf_counter()
        action()
        retried = False
        if moved is not None:
            try:
                _wait(moved, 10, f"{what}: the control to show the input", 0.05)
            except AssertionError:
                self.shot(f"{label}-input-dropped")
                retried = True
                t0 = time.perf_counter()
                action()
                _wait(moved, 10, f"{what}: the control to show the input (given twice)", 0.05)
        act_s = time.perf_counter() - t0
        try:
            seconds = act_s + _await_new_picture(self.page, self.cell, before, what)
        except AssertionError:
            self.shot(f"{label}-no-new-picture")
            raise
        _wait(lambda: "⏳" not in self.cell.inner_text(), PICTURE_TIMEOUT_S, "the busy sign to go", 0.02)
        final = time.perf_counter() - t0
        self.check_clean(f"{self.lesson} {self.widget}, {control}")
        self.log.append({"lesson": self.lesson, "widget": self.widget, "control": control, "round": self.round,
                         "seconds": round(seconds, 3), "final_seconds": round(final, 3),
                         "fast_mode": True, "threads": os.cpu_count(), **({"input_retried": True} if retried else {})})
        self.shot(label)

    def sliders(self, repeat: int) -> None:
        handles = self.cell.locator(".widget-slider .noUi-handle")
        for k in range(handles.count()):
            h = handles.nth(k)
            name = self.cell.locator(".widget-slider").nth(k).locator(".widget-label").first.inner_text().strip()
            at_end = h.get_attribute("aria-valuenow") == h.get_attribute("aria-valuemax")
            key = "ArrowLeft" if at_end or repeat % 2 else "ArrowRight"

            def press(h=h, key=key):
                h.focus()
                h.press(key)

            was = h.get_attribute("aria-valuenow")
            self.act(f"slider {name or k} ({key})", press, f"slider{k}",
                     moved=lambda h=h, was=was: h.get_attribute("aria-valuenow") != was)

    def dropdowns(self, repeat: int) -> None:
        selects = self.cell.locator(".widget-dropdown select")
        for k in range(selects.count()):
            s = selects.nth(k)
            options = s.locator("option").all_inner_texts()
            other = next(o for o in options if o != s.evaluate("e => e.options[e.selectedIndex].text"))
            self.act(f"dropdown -> {other}", lambda s=s, other=other: s.select_option(label=other), f"dropdown{k}")

    def toggles(self, repeat: int) -> None:
        buttons = self.cell.locator(".widget-toggle-buttons button")
        for k in range(buttons.count()):
            b = buttons.nth(k)
            if "mod-active" in (b.get_attribute("class") or ""):
                continue
            self.act(f"toggle -> {b.inner_text()}", b.click, f"toggle{k}",
                     moved=lambda b=b: "mod-active" in (b.get_attribute("class") or ""))
            return

    def text_boxes(self, repeat: int) -> None:
        if repeat == 0:
            self.prompts()
            return
        for k in range(self.cell.locator(".widget-text input").count()):  # later rounds: a new prompt each time
            box = self.cell.locator(".widget-text input").nth(k)
            prompt = ("a red 3 moving left", "a green 5 moving up", "a cyan 0 moving right")[repeat % 3]

            def type_prompt(box=box, prompt=prompt) -> None:
                box.fill(prompt)
                box.press("Enter")

            self.act(f"text -> {prompt!r}", type_prompt, f"text{k}")

    def prompts(self) -> None:
        boxes = self.cell.locator(".widget-text input")
        for k in range(boxes.count()):
            box = boxes.nth(k)

            def type_prompt(text: str, box=box) -> None:
                box.fill(text)
                box.press("Enter")

            self.act(f"text -> {GOOD_PROMPT!r}", lambda: type_prompt(GOOD_PROMPT), f"text{k}")
            # an unknown word: its message, as text, in place of the picture
            t0 = time.perf_counter()
            type_prompt(UNKNOWN_PROMPT)
            _wait(lambda: "unknown word" in _widget_text(self.cell).lower(), PICTURE_TIMEOUT_S,
                  f"{self.lesson} {self.widget}: the unknown-word message (the widget's text: "
                  f"{_widget_text(self.cell)[:300]!r})", 0.02)
            self.log.append({"lesson": self.lesson, "widget": self.widget, "control": f"text -> {UNKNOWN_PROMPT!r}",
                             "seconds": round(time.perf_counter() - t0, 3), "fast_mode": True,
                             "threads": os.cpu_count(), "shows": "unknown-word message"})
            assert "purple" in _widget_text(self.cell) and _picture(self.cell) is None
            self.shot(f"text{k}-unknown-word")
            type_prompt(GOOD_PROMPT)
            _wait(lambda: _picture(self.cell) is not None, PICTURE_TIMEOUT_S, "the picture to come back")
            self.check_clean(f"{self.lesson} {self.widget}, text box after the unknown word")


@pytest.mark.parametrize("lesson", list(WIDGETS))
def test_every_widget_answers_every_control_in_jupyterlab(lab, browser, latency_log, lesson):
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)[:500]))
    elsewhere = _watch_requests(page)
    try:
        page.goto(f"{lab.url}/lab/tree/{lesson}.ipynb?reset&token={lab.token}", wait_until="domcontentloaded")
        t0 = time.perf_counter()
        _run_through_last_widget(page, lesson)
        latency_log.append({"lesson": lesson, "run_through_last_widget_seconds": round(time.perf_counter() - t0, 1)})
        assert not page_errors, f"{lesson}: the page raised while running: {page_errors}"
        for marker in WIDGETS[lesson]:
            index = page.evaluate(JS_MARK_CELL, marker)
            assert index >= 0, f"{lesson}: no code cell contains {marker!r} (update WIDGETS in this test)"
            cell = page.locator(f'[data-minidiff-cell="{index}"]')
            widget = marker.split("(")[0]
            _wait(lambda cell=cell: _picture(cell) is not None, 60, f"{lesson} {widget}: its first picture")
            mover = Mover(page, cell, lesson, widget, latency_log, page_errors)
            mover.check_clean(f"{lesson} {widget}, as the run left it")
            mover.shot("start")
            moved = len(latency_log)
            for repeat in range(REPEATS):
                mover.round = repeat
                mover.sliders(repeat)
                mover.dropdowns(repeat)
                mover.toggles(repeat)
                mover.text_boxes(repeat)
            assert len(latency_log) > moved, f"{lesson} {widget}: the test found no control to move"
        assert not elsewhere, f"{lesson}: the page asked the network for {sorted(elsewhere)[:5]}"
    except AssertionError as e:  # what the server and the kernel said helps to tell a slow kernel from a lost message
        raise AssertionError(f"{e}\n--- the notebook's state: {page.evaluate(JS_STATE)}\n--- JupyterLab's log "
                             f"(the kernel's stderr included), last 4000 characters:\n{lab.log_tail(4000)}") from e
    finally:
        context.close()
        lab.shut_down_kernels()


ANIMATED = ("06_vae", "07_text_conditioning", "08_mmdit_text_to_video")


@pytest.mark.parametrize("lesson", list(WIDGETS))
def test_a_lesson_opened_without_running_names_its_widgets_and_shows_their_stills(lab, browser, lesson):
    """As cloned (untrusted, nothing run): where a widget cannot be drawn its text names it and says a still follows,
    the still's figure is there, animations play as images, and nothing is fetched from the network."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    page = context.new_page()
    elsewhere = _watch_requests(page)
    try:
        page.goto(f"{lab.url}/lab/tree/{lesson}.ipynb?reset&token={lab.token}", wait_until="domcontentloaded")
        _wait(lambda: page.evaluate(JS_STATE), 120, f"{lesson}: the notebook to open")
        time.sleep(1)
        for marker in WIDGETS[lesson]:
            index = page.evaluate(JS_MARK_CELL, marker)
            cell = page.locator(f'[data-minidiff-cell="{index}"]')
            text = _wait(lambda cell=cell: "\n".join(cell.locator(".jp-OutputArea-output").all_inner_texts()).strip(),
                         30, f"{lesson}: the saved output of the cell with {marker!r}")
            assert "an interactive widget; run the notebook to use it" in text and "VBox(" not in text, text[:300]
            nxt = page.locator(f'[data-minidiff-cell="{index}"] ~ .jp-Cell').nth(1)
            assert nxt.locator(".jp-OutputArea-output img").count() >= 1, f"{lesson}: no still after {marker!r}"
        if lesson in ANIMATED:
            gifs = page.locator('.jp-OutputArea-output img[src^="data:image/gif"]')
            _wait(lambda: gifs.count() > 0 and all(
                gifs.nth(k).evaluate("e => e.complete && e.naturalWidth > 0") for k in range(gifs.count())), 30,
                f"{lesson}: its animations to load as images")
        assert not elsewhere, f"{lesson}: the page asked the network for {sorted(elsewhere)[:5]}"
    finally:
        context.close()
        lab.shut_down_kernels()
