"""The report command writes one self-contained HTML file, atomically."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import pytest

pytest.importorskip("plotly")

from toolkit.__main__ import main
from toolkit.report import ReportContext, Table, all_sections, build_report, register_section
from toolkit.report._registry import _SECTIONS


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.scripts = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.scripts.append(dict(attrs))


def test_quick_report_is_self_contained(tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out), "--quick", "--no-progress"]) == 0
    text = out.read_text()
    parser = _Collector()
    parser.feed(text)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert all("src" not in s for s in parser.scripts), "scripts must be inline, not fetched"
    assert "Plotly" in text and "plotly-graph-div" in text
    assert "Environment and modules" in text and "Attention kernels: self-check" in text
    assert "all kernel checks passed" in text
    assert '<span class="tk-fail">' not in text
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_module_entry_point_runs(tmp_path):
    out = tmp_path / "r.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit",
            "report",
            "--out",
            str(out),
            "--quick",
            "--sections",
            "environment",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 100_000


def test_failing_section_leaves_nothing(tmp_path, capsys):
    @register_section("broken-for-test", "Broken", order=1)
    def _broken(ctx: ReportContext):
        raise ValueError("boom")

    try:
        out = tmp_path / "report.html"
        code = main(["report", "--out", str(out), "--quick", "--no-progress"])
        assert code == 1
        assert "section 'broken-for-test' failed: ValueError: boom" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []
    finally:
        _SECTIONS.pop("broken-for-test")


def test_unknown_section_and_bad_out(tmp_path):
    with pytest.raises(ValueError, match="not registered"):
        all_sections(["no-such-section"])
    with pytest.raises(ValueError, match="does not exist"):
        build_report(tmp_path / "missing" / "r.html", progress=False)
    with pytest.raises(ValueError, match="must be a file path"):
        build_report(tmp_path, progress=False)


def test_table_renders_and_escapes():
    html = Table([{"a": "<b>", "ok": True, "x": 0.123456}], caption="c").to_html()
    assert "&lt;b&gt;" in html and "tk-pass" in html and "0.1235" in html
