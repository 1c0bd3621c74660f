"""Every notebook, run in JupyterLab in headless chromium as a user would (Run All), and checked
against the Python side of its explorers: no errors, the right legends, every control moves its
plots, nothing wider than the notebook at 1440x900, and data still there after a reload."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ._lab import ARTIFACTS, MOVES, VIEWPORT, NotebookPage, expected_legend

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module", params=NOTEBOOKS)
def notebook(request, lab, playwright_browser):
    context = playwright_browser.new_context(viewport=VIEWPORT)
    nb = NotebookPage.open(lab, context, request.param)
    print(f"\n{request.param}: Run All took {nb.run_seconds:.1f} s")
    yield nb
    nb.close()
    context.close()


def _explorers(nb: NotebookPage) -> list[dict]:
    if not nb.explorers:
        pytest.skip(f"{nb.name} shows no explorer")
    return nb.explorers


def test_no_error_cells_and_no_stderr(notebook):
    bad = [
        f"cell {o['cell']} ({o['mime'] or 'no mime'}): {o['text'][:200]}"
        for o in notebook.outputs()
        if "stderr" in o["mime"]
        or "error" in o["mime"]
        or re.search(r"Error displaying widget|model not found|Traceback", o["text"])
    ]
    assert not bad, f"{notebook.name} shows errors or stderr:\n" + "\n".join(bad)


def test_explorers_render_with_the_legend_names_python_holds(notebook):
    problems = []
    for e in _explorers(notebook):
        dom = notebook.dom_figures(e["tag"])
        if dom is None:
            problems.append(f"{e['cls']}: not rendered (no container or no plot)")
            continue
        if len(dom) != len(e["figures"]):
            problems.append(f"{e['cls']}: {len(dom)} plots drawn, Python holds {len(e['figures'])}")
        want = set().union(*(expected_legend(f) for f in e["figures"]))
        shown = {t for f in dom for t in f["legend"]}
        # A plot in a closed tab or accordion draws no legend until it is shown: there, every
        # name shown must still be one Python holds.
        all_visible = all(f["visible"] for f in dom)
        if (want != shown) if all_visible else not shown <= want:
            hidden = sum(not f["visible"] for f in dom)
            problems.append(
                f"{e['cls']}: legend shows {sorted(shown)}, Python holds {sorted(want)}"
                + (f" ({hidden} plots hidden)" if hidden else "")
            )
        for f in dom:
            generic = [t for t in f["legend"] if re.fullmatch(r"trace \d+", t)]
            if generic:
                problems.append(f"{e['cls']}: plotly's default names {generic} in a legend")
    assert not problems, "\n".join(problems)


def test_nothing_overflows_the_notebook_at_1440x900(notebook):
    found = notebook.overflow()
    assert not found, f"{notebook.name} at 1440x900 with the file browser open:\n" + "\n".join(
        found
    )


def test_each_control_changes_the_plot(notebook):
    failed = []
    for e in _explorers(notebook):
        # Controls outside the explorer's live_controls feed a background run (Monte Carlo,
        # alpha-CROWN, ...) started by a button: not analytic updates, left out here.
        for c in notebook.controls(e["tag"]):
            if c.label in e["other"] and c.label not in e["live"]:
                continue
            move = notebook.move(e, c)
            MOVES.append(move)
            # A choice may legitimately draw what its neighbour draws (the analytic model of
            # a CNN is the MLP's): a dropdown or toggle passes when some choice moves the plot.
            for step in range(1, notebook.choices(e["tag"], c) - 1):
                if move.changed:
                    break
                move = notebook.move(e, c, step)
                MOVES.append(move)
            if not move.changed:
                failed.append(
                    f"{move.explorer}: {move.control} did not change the plots {move.note}"
                )
    if failed:
        for e in notebook.explorers:
            notebook.screenshot(ARTIFACTS / f"{notebook.name}-{e['cls']}.png", e["tag"])
    assert not failed, "\n".join(failed)


def test_plots_hold_their_data_after_a_reload(notebook):
    """Runs last for each notebook: the page is reloaded while the kernel runs on."""
    _explorers(notebook)
    notebook.refresh()  # the controls moved before: Python's figures now hold other data
    explorers = notebook.explorers
    notebook.reload()
    print(f"{notebook.name}: explorers back {notebook.reload_seconds:.1f} s after the reload")
    problems = []
    for e in explorers:
        dom = notebook.dom_figures(e["tag"])
        want = sorted(sum(t["points"] for t in f["traces"]) for f in e["figures"])
        if dom is None:
            problems.append(f"{e['cls']}: not rendered after the reload")
            continue
        got = sorted(sum(max(n, 0) for n in f["points"]) for f in dom)
        if got != want:
            problems.append(
                f"{e['cls']}: after the reload the plots hold {got} points, Python {want}"
            )
    # Open defects (issue 16), expected failures until fixed: after a reload JupyterLab's widget
    # manager can give up on a model ("model not found"), and the SNN explorer can come back
    # with part of its neuron figure.  A rendered explorer other than SNN that lost data still
    # fails.  Why "model not found" (plotly 7.1, anywidget 0.11, ipywidgets 8.1.9,
    # jupyterlab_widgets 3.0.17): every FigureWidget is an anywidget whose state carries
    # plotly's whole 4.96 MB JavaScript bundle (``_esm``), so the tour's 19 figures answer a
    # reload's ``request_states`` with about 97 MB, and anywidget's front end evaluates the
    # bundle once per figure from a fresh Blob URL (only http(s) ``_esm`` URLs are imported,
    # and cached, as modules) and gives up after 2 s ("[anywidget] Failed to initialize
    # model."); ipywidgets' ``get_model`` polls 2 s more and, the restore being marked done,
    # shows "Error displaying widget: model not found" for that figure and every box that holds
    # it.  Upstream: plotly/plotly.py#5143 (FigureWidget slow since the anywidget switch,
    # plotly/plotly.py#4823), the per-widget ``_esm`` copy (amachino/qubex#283 measures it),
    # jupyter-widgets/ipywidgets#3823 (random "model not found" in JupyterLab 4).  Workaround
    # for users: reload once more when the kernel is idle, or re-run the cell.
    known = bool(problems) and all(
        p.endswith("not rendered after the reload") or p.startswith("SNNExplorer:")
        for p in problems
    )
    if problems:
        notebook.screenshot(ARTIFACTS / f"{notebook.name}-reload.png")
        problems.append(
            f"waited {notebook.reload_seconds:.0f} s; page: {notebook.widget_census()}; "
            f"console errors: {notebook.console[-5:]}"
        )
    if known:
        pytest.xfail("known reload defects (issue 16): " + "; ".join(problems))
    assert not problems, "\n".join(problems)
