"""Browser tests run only when asked for by marker (``-m browser``), never in the README's
test command, and skip with the reason when chromium or Playwright is missing.  On a failure the
page is saved as a screenshot in the folder printed in the header and the summary."""

from __future__ import annotations

import pytest

from ._lab import ARTIFACTS, MOVES, Server, launch, missing


def _selected(config) -> bool:
    return "browser" in (config.option.markexpr or "") and "not browser" not in (
        config.option.markexpr or ""
    )


def pytest_collection_modifyitems(config, items):
    if _selected(config):
        return
    kept = [i for i in items if "browser" not in i.keywords]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if "browser" in i.keywords])
        items[:] = kept


def pytest_report_header(config):
    if _selected(config):
        return f"browser tests: screenshots on failure go to {ARTIFACTS}"
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and "browser" in item.keywords:
        nb = item.funcargs.get("notebook") or item.funcargs.get("dashboard")
        page = getattr(nb, "page", nb)
        if page is not None and hasattr(page, "screenshot"):
            path = ARTIFACTS / f"{item.name.replace('/', '_')}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(path), full_page=True)
                report.sections.append(("screenshot", str(path)))
            except Exception as exc:  # the page may be gone; the failure itself matters more
                report.sections.append(("screenshot", f"not taken: {exc}"))
    return report


def pytest_terminal_summary(terminalreporter, config):
    if not _selected(config):
        return
    if MOVES:
        from ._lab import latency_table

        terminalreporter.write_sep("-", "browser latency (control change -> last plot redraw)")
        terminalreporter.write_line(latency_table(MOVES))
    terminalreporter.write_line(f"browser artifacts (screenshots on failure): {ARTIFACTS}")


@pytest.fixture(scope="session")
def playwright_browser():
    reason = missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory, playwright_browser):
    server = Server(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()
