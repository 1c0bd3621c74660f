"""Drive JupyterLab (or Voilà) in Debian's headless chromium through Playwright for Python.

The harness behind ``tests/browser`` and ``scripts/browser-latency``: it starts a server on
loopback with a temporary token over a temporary copy of ``notebooks/``, opens a notebook as a
user would (Run All from the menu), and reads what the page shows: outputs, plotly figures
(their ``gd.data`` and legend texts), widget controls.  The kernel itself is reached through its
connection file, so the Python side of every explorer (its figures' trace names and point
counts) is the reference the page is checked against.  Nothing is installed or downloaded here:
chromium comes from ``apt-get install chromium``, Playwright from ``pip install playwright``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("TOOLKIT_CHROMIUM", "/usr/bin/chromium"))
#: Flags for chromium on a machine with a closed network (no GPU, no background fetches).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}
#: Every control moved in this process, for the latency table in the test summary.
MOVES: list[Move] = []
#: Screenshots on failure go here (printed in the test header and summary).
ARTIFACTS = Path(
    os.environ.get("TOOLKIT_BROWSER_ARTIFACTS")
    or Path(tempfile.gettempdir()) / "toolkit-browser-artifacts"
)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium; or set TOOLKIT_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return (
            "Playwright for Python is not installed (pip install playwright; no browser download)"
        )
    return None


def launch(playwright: Any) -> Any:
    """Debian's chromium, headless, never a downloaded browser."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


class Server:
    """JupyterLab (``app="lab"``) or Voilà (``app="voila"``) on 127.0.0.1 with a fresh token.

    ``workdir`` receives a copy of ``notebooks/`` and the server's settings, workspaces and
    runtime files, so runs share no state with each other or with the user's Jupyter.
    """

    def __init__(self, workdir: Path, app: str = "lab", notebook: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.app = app
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.runtime = self.workdir / "runtime"
        notebooks = self.workdir / "notebooks"
        if not notebooks.exists():
            shutil.copytree(ROOT / "notebooks", notebooks)
        settings = self.workdir / "settings"
        # Every cell stays in the DOM (no windowing), and no news or update checks go out.
        _write_json(
            settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings",
            {"windowingMode": "none"},
        )
        _write_json(
            settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings",
            {"fetchNews": "false", "checkForUpdates": False},
        )
        env = dict(os.environ)
        env.update(
            TOOLKIT_QUICK="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.workdir / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(self.runtime),
            JUPYTER_CONFIG_DIR=str(self.workdir / "config"),
        )
        common = [f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0"]
        if app == "lab":
            cmd = [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--allow-root",  # CI runs as root
                "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={self.workdir}",
                *common,
            ]
        elif app == "voila":
            cmd = [
                sys.executable,
                "-m",
                "voila",
                str(notebooks / (notebook or "")),
                "--no-browser",
                f"--port={self.port}",
                "--Voila.ip=127.0.0.1",
                f"--token={self.token}",
            ]
        else:
            raise ValueError(f"app must be 'lab' or 'voila', got {app!r}")
        self.log = open(self.workdir / f"{app}-server.log", "w")
        self.proc = subprocess.Popen(
            cmd, cwd=self.workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_up()

    def _wait_up(self, timeout: float = 120.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited early; see {self.log.name}")
            try:
                if self.app == "lab":
                    urllib.request.urlopen(self.url("api/status"), timeout=5).read()
                else:  # a GET of Voilà's page would run the notebook: a connection will do
                    socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"{self.app} did not answer within {timeout:.0f} s; see {self.log.name}")

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def kernel_of(self, notebook: str) -> dict | None:
        for s in self.api("sessions"):
            if s.get("path", "").endswith(notebook):
                return s["kernel"]
        return None

    def kernel_client(self, notebook: str) -> Any:
        from jupyter_client import BlockingKernelClient

        kernel = self.kernel_of(notebook)
        if kernel is None:
            raise RuntimeError(f"no kernel runs {notebook}")
        client = BlockingKernelClient(
            connection_file=str(self.runtime / f"kernel-{kernel['id']}.json")
        )
        client.load_connection_file()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        return client

    def shutdown_kernel(self, notebook: str) -> None:
        kernel = self.kernel_of(notebook)
        if kernel is not None:
            self.api(f"kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# --- the Python side, read from the running kernel ---------------------------------------------
_KERNEL_QUERY = r"""
def _e2e_explorers():
    import gc, json, warnings
    import numpy as np
    from toolkit.widgets import Explorer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # type(), not isinstance(): a dead weak proxy raises on its __class__.
        found = [o for o in gc.get_objects() if issubclass(type(o), Explorer)]
    found.sort(key=lambda e: id(e.widget))
    out = []
    def points(t):
        n = 0
        for key in ("x", "y", "z", "values", "r", "theta", "lat", "lon"):
            v = getattr(t, key, None) if key in t else None
            if v is not None:
                n += int(np.asarray(v, dtype=object).size)
        return n
    for i, e in enumerate(found):
        tag = f"e2e-explorer-{i}"
        if tag not in e.widget._dom_classes:
            e.widget.add_class(tag)
        figures = []
        for name, fig in e.figures.items():
            show = fig.layout.showlegend
            traces = [dict(type=t.type, name=t.name, showlegend=t.showlegend,
                           visible=t.visible, points=points(t)) for t in fig.data]
            figures.append(dict(name=name, showlegend=show, traces=traces))
        live = e.live_controls or tuple(e.controls)
        labels = {n: getattr(c, "description", "") or n for n, c in e.controls.items()}
        out.append(dict(tag=tag, cls=type(e).__name__, figures=figures,
                        live=[labels[n] for n in live if n in labels],
                        other=[labels[n] for n in e.controls if n not in live]))
    return json.dumps(out)
"""


def python_explorers(server: Server, notebook: str) -> list[dict]:
    """Every explorer alive in the notebook's kernel, tagged with a DOM class ``e2e-explorer-i``
    so the page's elements can be matched to it, with its figures' trace names and sizes."""
    client = server.kernel_client(notebook)
    try:
        client.execute_interactive(_KERNEL_QUERY, silent=True, store_history=False, timeout=60)
        reply = client.execute_interactive(
            "",
            silent=True,
            store_history=False,
            user_expressions={"r": "_e2e_explorers()"},
            timeout=120,
        )
    finally:
        client.stop_channels()
    result = reply["content"]["user_expressions"]["r"]
    if result["status"] != "ok":
        raise RuntimeError(f"kernel query failed: {result.get('ename')}: {result.get('evalue')}")
    return json.loads(ast.literal_eval(result["data"]["text/plain"]))


#: Trace types plotly.js leaves out of the legend unless ``showlegend=True`` is set.
_NO_LEGEND_BY_DEFAULT = {"heatmap", "heatmapgl", "contour", "histogram2d", "surface", "image"}


def expected_legend(figure: dict) -> set[str]:
    """The names plotly shows in a figure's legend: traces not hidden from it, when the legend
    is on (plotly's default shows it from two such traces on).  plotly.js makes a trace with no
    data invisible (no legend entry), and heatmap-like traces have no entry by default."""
    shown = [
        t
        for t in figure["traces"]
        if t["showlegend"] is not False
        and t["visible"] is not False
        and t["type"] != "pie"
        and t["points"] > 0
        and not (t["type"] in _NO_LEGEND_BY_DEFAULT and t["showlegend"] is None)
    ]
    if figure["showlegend"] is False or (figure["showlegend"] is None and len(shown) < 2):
        return set()
    return {t["name"] for t in shown if t["name"]}


# --- the page ---------------------------------------------------------------------------------
_JS_HELPERS = r"""
() => {
  if (window.__e2e) return;
  const count = (v) => {
    if (v == null) return 0;
    if (ArrayBuffer.isView(v)) return v.length;
    if (Array.isArray(v))
      return v.reduce((a, x) => a + (Array.isArray(x) || ArrayBuffer.isView(x) ? count(x) : 1), 0);
    if (typeof v === 'object' && v.bdata !== undefined) return -1;  // undecoded: unknown size
    return 1;
  };
  const keys = ['x', 'y', 'z', 'values', 'r', 'theta', 'lat', 'lon'];
  const plotPoints = (gd) => (gd.data || []).map(t => keys.reduce((a, k) => a + count(t[k]), 0));
  const hash = (s) => {
    let h = 0;
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
    return h;
  };
  const dataSig = (root) => hash([...root.querySelectorAll('.js-plotly-plot')].map(gd =>
      JSON.stringify((gd.data || []).map(t => keys.map(k => t[k] == null ? null :
          (ArrayBuffer.isView(t[k]) ? Array.from(t[k]) : t[k]))))).join('|'));
  window.__e2e = {count, plotPoints, dataSig};
}
"""


@dataclass
class Control:
    kind: str
    label: str
    index: int


@dataclass
class Move:
    explorer: str
    control: str
    changed: bool
    latency_ms: float | None
    note: str = ""
    #: control change -> the first plot mutation (what answers at once, when the rest of an
    #: update comes from a background job)
    first_ms: float | None = None


@dataclass
class NotebookPage:
    """One notebook open in JupyterLab after Run All."""

    #: Calm polls (0.1 s each) before an unchanged plot counts as unchanged.
    unchanged_polls = 30
    #: Seconds the explorers get to come back after a reload (the kernel sends every widget's
    #: state again; on a loaded 2-core machine that takes tens of seconds).
    reload_timeout = 120.0
    reload_seconds = 0.0  # how long the last reload took to show the explorers

    server: Server
    page: Any
    name: str
    run_seconds: float = 0.0
    explorers: list[dict] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    # -- opening and running -------------------------------------------------------------------
    @classmethod
    def open(cls, server: Server, context: Any, name: str, timeout: float = 600.0) -> NotebookPage:
        page = context.new_page()
        nb = cls(server, page, name)
        page.on(
            "console",
            lambda m: nb.console.append(f"{m.type}: {m.text}") if m.type in ("error",) else None,
        )
        # A workspace of its own, reset: only this notebook open, whatever ran before.
        stem = re.sub(r"\W", "", Path(name).stem)
        page.goto(server.url(f"lab/workspaces/e2e{stem}/tree/notebooks/{name}?reset"))
        page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=120_000)
        nb._ensure_file_browser()
        nb._wait_kernel(timeout=120)
        start = time.monotonic()
        nb.menu("Run", "Run All Cells")
        nb.wait_until_run(timeout)
        nb.run_seconds = time.monotonic() - start
        nb.save()
        page.evaluate(_JS_HELPERS)
        nb.refresh()
        nb.wait_for_explorers()
        return nb

    def refresh(self) -> None:
        """Read the explorers' current state from the kernel again."""
        self.explorers = python_explorers(self.server, self.name)

    def _ensure_file_browser(self) -> None:
        """The left file browser open, as a user has it (the width a notebook really gets)."""
        tab = self.page.locator('.jp-SideBar.jp-mod-left li[data-id="filebrowser"]')
        if tab.count() and "lm-mod-current" not in (tab.first.get_attribute("class") or ""):
            tab.first.click()

    def _wait_kernel(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            kernel = self.server.kernel_of(self.name)
            if kernel and kernel.get("execution_state") == "idle":
                return
            time.sleep(0.5)
        raise TimeoutError(f"the kernel of {self.name} did not become idle")

    def menu(self, top: str, item: str) -> None:
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).first.click()

    def prompts(self) -> list[str]:
        return self.page.eval_on_selector_all(
            ".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())"
        )

    def wait_until_run(self, timeout: float) -> None:
        end, quiet = time.monotonic() + timeout, 0
        while time.monotonic() < end:
            prompts = self.prompts()
            kernel = self.server.kernel_of(self.name) or {}
            busy = any("*" in p for p in prompts) or kernel.get("execution_state") != "idle"
            quiet = 0 if busy or not any(re.search(r"\d", p) for p in prompts) else quiet + 1
            if quiet >= 3:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{self.name}: Run All did not finish in {timeout:.0f} s")

    def save(self) -> None:
        self.page.keyboard.press("Control+s")
        self.page.wait_for_function(
            "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-mod-dirty,"
            " .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
            timeout=30_000,
        )

    def wait_for_explorers(self, timeout: float = 120.0) -> float:
        """Each explorer's container and its plots present, with data drawn: the seconds it
        took (``timeout`` when some never came)."""
        start = time.monotonic()
        while time.monotonic() < start + timeout:
            if all(self._drawn(e) for e in self.explorers):
                return time.monotonic() - start
            time.sleep(0.5)
        return timeout

    def _drawn(self, explorer: dict) -> bool:
        """Every figure of ``explorer`` on the page and drawn by plotly with all its traces:
        the first plot to appear is not enough, a loaded machine draws the rest seconds later."""
        dom = self.dom_figures(explorer["tag"])
        if dom is None:
            return False
        want = sorted(len(f["traces"]) for f in explorer.get("figures", []))
        return not want or sorted(f["traces"] for f in dom) == want

    def widget_census(self) -> dict:
        """What the page holds of the explorers: tagged containers, plots, widget views and
        widget error messages (for a failure message)."""
        return self.page.evaluate(
            r"""() => ({
              tagged: [...document.querySelectorAll('[class*="e2e-explorer-"]')].map(e =>
                  [...e.classList].find(c => c.startsWith('e2e-explorer-'))),
              plots: document.querySelectorAll('.js-plotly-plot').length,
              widgetViews: document.querySelectorAll('.jupyter-widgets').length,
              errors: [...document.querySelectorAll('.jp-OutputArea-output')]
                  .map(o => o.innerText || '').filter(t => /Error|model not found/.test(t))
                  .map(t => t.slice(0, 160))})"""
        )

    # -- reading the page ----------------------------------------------------------------------
    def outputs(self) -> list[dict]:
        """Every output of every cell: its cell index, MIME type and first characters."""
        return self.page.evaluate(
            r"""() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].flatMap((cell, i) =>
                [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
                    cell: i, mime: o.getAttribute('data-mime-type') || '',
                    text: (o.innerText || '').slice(0, 400)})))"""
        )

    def dom_figures(self, tag: str) -> list[dict] | None:
        """For the explorer tagged ``tag``: each plot's legend texts and per-trace point counts
        (from plotly's ``gd.data``), or None while the container or its plots are missing."""
        return self.page.evaluate(
            """(tag) => {
                const root = document.querySelector('.' + tag);
                if (!root) return null;
                const plots = [...root.querySelectorAll('.js-plotly-plot')];
                if (!plots.length) return null;
                return plots.map(gd => ({
                    visible: gd.offsetParent !== null && gd.getBoundingClientRect().width > 0,
                    legend: [...gd.querySelectorAll('.legendtext')].map(t => t.textContent),
                    points: window.__e2e ? window.__e2e.plotPoints(gd) : [],
                    traces: gd._fullData ? gd._fullData.length : -1,
                    title: (gd.querySelector('.gtitle') || {}).textContent || ''}));
            }""",
            tag,
        )

    def overflow(self) -> list[str]:
        """Elements in outputs whose right edge passes the notebook's (or their output area's)
        right edge without a scroll bar to reach them."""
        return self.page.evaluate(
            r"""() => {
              const nb = document.querySelector(
                  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
              const nbRight = nb.getBoundingClientRect().right;
              const found = [];
              const scrolls = (el, stop) => {
                for (let a = el.parentElement; a && a !== stop; a = a.parentElement) {
                  const s = getComputedStyle(a).overflowX;
                  if ((s === 'auto' || s === 'scroll') && a.scrollWidth > a.clientWidth)
                    return a.getBoundingClientRect().right <= nbRight + 1;
                }
                return false;
              };
              document.querySelectorAll('.jp-Cell').forEach((cell, i) => {
                const area = cell.querySelector('.jp-Cell-outputArea');
                if (!area) return;
                const limit = Math.min(nbRight, area.getBoundingClientRect().right) + 1;
                const offends = (el) => {
                  const r = el.getBoundingClientRect();
                  return r.width > 0 && r.height > 0 && r.right > limit;
                };
                area.querySelectorAll('*').forEach(el => {
                  if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') return;
                  if (!offends(el) || (el.parentElement !== area && offends(el.parentElement)))
                    return;
                  if (scrolls(el, area)) return;
                  const r = el.getBoundingClientRect();
                  const cls = el.className && el.className.baseVal === undefined
                      ? '.' + String(el.className).trim().split(/\s+/).slice(0, 3).join('.') : '';
                  const px = Math.round(r.right - limit + 1);
                  const text = (el.innerText || '').slice(0, 60).replace(/\s+/g, ' ');
                  found.push(`cell ${i}: ${el.tagName.toLowerCase()}${cls} ends ${px} px`
                             + ` past the notebook (${text})`);
                });
              });
              return found.slice(0, 30);
            }"""
        )

    def controls(self, tag: str) -> list[Control]:
        """The explorer's controls that a user moves (buttons that start long work excluded)."""
        raw = self.page.evaluate(
            """(tag) => {
              const root = document.querySelector('.' + tag);
              const kinds = [['slider', '.widget-slider'], ['dropdown', '.widget-dropdown'],
                             ['toggle', '.widget-toggle-buttons'], ['checkbox', '.widget-checkbox'],
                             ['multiple', '.widget-select-multiple'], ['text', '.widget-text'],
                             ['textarea', '.widget-textarea']];
              const out = [];
              for (const [kind, sel] of kinds) {
                root.querySelectorAll(sel).forEach((el, index) => {
                  // A disabled control says it does not apply to the current settings.
                  if (el.querySelector('[disabled]') || el.matches('.mod-disabled, [disabled]'))
                    return;
                  // A checkbox's own label is empty (a zero-width space): its description
                  // sits in .widget-label-basic beside the box.
                  const named = [...el.querySelectorAll('.widget-label, .widget-label-basic')]
                      .map(l => l.textContent.replace(/\\u200b/g, '').trim()).find(t => t);
                  const label = named || el.getAttribute('title') || `${kind} ${index}`;
                  out.push({kind, label: label.trim(), index});
                });
              }
              return out;
            }""",
            tag,
        )
        return [Control(**c) for c in raw]

    def _control_locator(self, tag: str, c: Control) -> Any:
        sel = {
            "slider": ".widget-slider",
            "dropdown": ".widget-dropdown",
            "toggle": ".widget-toggle-buttons",
            "checkbox": ".widget-checkbox",
            "multiple": ".widget-select-multiple",
            "text": ".widget-text",
            "textarea": ".widget-textarea",
        }[c.kind]
        return self.page.locator(f".{tag} {sel}").nth(c.index)

    def choices(self, tag: str, c: Control) -> int:
        """How many values a dropdown or toggle control offers (1 for other kinds)."""
        el = self._control_locator(tag, c)
        if c.kind == "dropdown":
            return el.locator("select option").count()
        if c.kind == "toggle":
            return el.locator("button").count()
        return 1

    def _act(self, tag: str, c: Control, step: int) -> None:
        el = self._control_locator(tag, c)
        el.scroll_into_view_if_needed()
        if c.kind == "slider":
            handle = el.locator(".noUi-handle").first
            before = el.locator(".widget-readout").first.inner_text()
            handle.focus()
            self.page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
            if el.locator(".widget-readout").first.inner_text() == before:  # at an end
                self.page.keyboard.press("ArrowLeft" if step % 2 == 0 else "ArrowRight")
        elif c.kind in ("dropdown", "multiple"):
            select = el.locator("select").first
            options = select.locator("option").all_inner_texts()
            current = select.evaluate("s => [...s.selectedOptions].map(o => o.textContent)")
            if c.kind == "dropdown":
                i = (options.index(current[0]) + 1) % len(options) if current else 0
                select.select_option(label=options[i])
            else:
                flip = options[step % len(options)]
                keep = [o for o in current if o != flip] or [o for o in options if o != flip][:1]
                select.select_option(label=keep if flip in current else [*current, flip])
        elif c.kind == "toggle":
            buttons = el.locator("button")
            n = buttons.count()
            active = [
                i for i in range(n) if "mod-active" in (buttons.nth(i).get_attribute("class") or "")
            ]
            buttons.nth(((active[0] if active else -1) + 1) % n).click()
        elif c.kind == "checkbox":
            el.locator("input[type=checkbox]").click()
        elif c.kind in ("text", "textarea"):
            box = el.locator("input, textarea").first
            value = box.input_value()
            words = value.split()
            # Swap two neighbouring words: the same length, a new text.
            if len(words) > 2:
                words[1], words[2] = words[2], words[1]
            new = " ".join(words) if words != value.split() else value + " again"
            box.fill(new)
            box.press("Enter" if c.kind == "text" else "Tab")

    def move(self, explorer: dict, c: Control, step: int = 0, timeout: float = 60.0) -> Move:
        """Move one control as a user would and wait for the plots to settle: whether the plots'
        data changed, and the time from the input event to the first and the last plot mutation.
        Settled: the kernel idle, no background job of the explorer running, and the plots
        still."""
        tag = explorer["tag"]
        self.page.evaluate(
            """(tag) => {
              const root = document.querySelector('.' + tag);
              const s = window.__e2e;
              s.t0 = null; s.first = null; s.last = null; s.armed = performance.now();
              s.before = s.dataSig(root);
              if (s.obs) s.obs.disconnect();
              s.obs = new MutationObserver(() => {
                  s.last = performance.now();
                  if (s.first === null && s.t0 !== null) s.first = s.last; });
              root.querySelectorAll('.js-plotly-plot').forEach(p => s.obs.observe(p,
                  {subtree: true, childList: true, attributes: true, characterData: true}));
              if (s.markRoot !== root) {
                const mark = () => { if (s.t0 === null) s.t0 = performance.now(); };
                ['keydown', 'input', 'change', 'pointerdown'].forEach(ev =>
                    root.addEventListener(ev, mark, true));
                s.markRoot = root;
              }
            }""",
            tag,
        )
        self._act(tag, c, step)
        # Settled: the kernel idle and no plot mutation for 0.7 s, seen 3 polls in a row once
        # the data changed, or for 3 s more when nothing has changed (a control that does
        # nothing, or a front end that drops the update).
        end = time.monotonic() + timeout
        calm = 0
        while time.monotonic() < end:
            state = self.page.evaluate(
                """(tag) => {
                    const s = window.__e2e; const root = document.querySelector('.' + tag);
                    return {t0: s.t0, first: s.first, last: s.last, armed: s.armed,
                            now: performance.now(),
                            changed: s.dataSig(root) !== s.before,
                            busy: [...root.querySelectorAll('.widget-html')].some(
                                e => /running…|cancelling…/.test(e.innerText))}; }""",
                tag,
            )
            quiet_ms = state["now"] - (state["last"] or state["t0"] or state["armed"])
            # a background job of the explorer (its bar says "running…") redraws when done
            idle = self.kernel_idle() and not state["busy"]
            calm = calm + 1 if idle and quiet_ms > 700 else 0
            if calm >= (3 if state["changed"] else self.unchanged_polls):
                break
            time.sleep(0.1)
        latency = first = None
        if state["t0"] is not None and state["last"] is not None:
            latency = state["last"] - state["t0"]
            first = state["first"] - state["t0"]
        status = self.page.evaluate(
            """(tag) => [...document.querySelectorAll('.' + tag + ' .widget-html')]
                 .map(e => e.innerText).filter(t => /Error/.test(t)).join(' ')""",
            tag,
        )
        return Move(
            explorer["cls"], f"{c.kind} {c.label!r}", state["changed"], latency, status, first
        )

    def kernel_idle(self) -> bool:
        kernel = self.server.kernel_of(self.name) or {}
        return kernel.get("execution_state") == "idle"

    def screenshot(self, path: Path, tag: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if tag and self.page.locator(f".{tag}").count():
            self.page.locator(f".{tag}").first.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path))
        return path

    def reload(self) -> None:
        self.save()
        self.page.reload()
        self.page.wait_for_selector(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell", timeout=120_000
        )
        self.page.evaluate(_JS_HELPERS)
        self.reload_seconds = self.wait_for_explorers(timeout=self.reload_timeout)
        # The widgets' views are restored from the kernel asynchronously: let them draw.
        time.sleep(3.0)

    def close(self) -> None:
        try:
            self.server.shutdown_kernel(self.name)
        finally:
            self.page.close()


def latency_table(moves: list[Move]) -> str:
    """A Markdown table of moves: explorer, control, plot changed, first and last plot change."""
    rows = [
        "| explorer | control | plot changed | control → first plot change (ms) "
        "| control → last plot redraw (ms) |",
        "|---|---|---|---|---|",
    ]
    for m in moves:
        ms = "—" if m.latency_ms is None else f"{m.latency_ms:.0f}"
        first = "—" if m.first_ms is None else f"{m.first_ms:.0f}"
        rows.append(
            f"| {m.explorer} | {m.control} | {'yes' if m.changed else 'NO'} | {first} | {ms} |"
        )
    return "\n".join(rows)


class DashboardPage(NotebookPage):
    """An explorer served alone by Voilà: its one explorer is tagged ``e2e-explorer-0`` from the
    page (Voilà keeps its kernel to itself), and "settled" is judged from the plots alone."""

    @classmethod
    def open_dashboard(cls, server: Server, context: Any, timeout: float = 600.0) -> DashboardPage:
        page = context.new_page()
        nb = cls(server, page, "dashboard")
        page.on(
            "console",
            lambda m: nb.console.append(f"{m.type}: {m.text}") if m.type == "error" else None,
        )
        start = time.monotonic()
        page.goto(server.url(""), timeout=timeout * 1000)
        page.wait_for_selector(".js-plotly-plot", timeout=timeout * 1000)
        nb.run_seconds = time.monotonic() - start
        page.evaluate(_JS_HELPERS)
        page.evaluate(
            """() => { const plot = document.querySelector('.js-plotly-plot');
                 let box = plot;
                 for (let a = plot; a; a = a.parentElement)
                   if (a.classList && a.classList.contains('widget-box')) box = a;
                 box.classList.add('e2e-explorer-0'); }"""
        )
        nb.explorers = [{"tag": "e2e-explorer-0", "cls": "dashboard", "figures": []}]
        time.sleep(2.0)
        return nb

    # Voilà's kernel state is not visible from here: give a slow update more time.
    unchanged_polls = 150

    def kernel_idle(self) -> bool:
        return True

    def close(self) -> None:
        self.page.close()
