"""One explorer served alone as a Voilà dashboard (the ``voila`` extra) renders in chromium with
its data and named legends, and answers a control."""

from __future__ import annotations

import re

import pytest

from ._lab import VIEWPORT, DashboardPage, Server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, playwright_browser):
    pytest.importorskip(
        "voila", reason="the voila extra is not installed (pip install -e .[voila])"
    )
    server = Server(
        tmp_path_factory.mktemp("voila"), app="voila", notebook="dashboards/isometry.ipynb"
    )
    context = playwright_browser.new_context(viewport=VIEWPORT)
    try:
        nb = DashboardPage.open_dashboard(server, context)
        print(f"\nvoila: the isometry dashboard drew its first plot in {nb.run_seconds:.1f} s")
        yield nb
        nb.close()
    finally:
        context.close()
        server.stop()


def test_the_dashboard_shows_the_explorer_with_data_and_no_code(dashboard):
    figures = dashboard.dom_figures("e2e-explorer-0")
    assert figures, "no plot in the dashboard"
    assert all(sum(max(n, 0) for n in f["points"]) > 0 for f in figures), figures
    legends = [t for f in figures for t in f["legend"]]
    assert legends and not [t for t in legends if re.fullmatch(r"trace \d+", t)], legends
    visible_code = dashboard.page.evaluate(
        """() => [...document.querySelectorAll('.jp-InputArea-editor, .CodeMirror, .cm-editor')]
               .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height > 0)
               .length"""
    )
    assert visible_code == 0, f"{visible_code} code cells shown"
    text = dashboard.page.inner_text("body")
    assert "Traceback" not in text and "Error displaying widget" not in text


def test_a_control_of_the_dashboard_changes_its_plots(dashboard):
    explorer = dashboard.explorers[0]
    sliders = [c for c in dashboard.controls(explorer["tag"]) if c.kind == "slider"]
    assert sliders, "the dashboard shows no slider"
    move = dashboard.move(explorer, sliders[0])
    assert move.changed, f"{move.control} did not change the plots"
