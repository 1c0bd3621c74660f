"""The report command fails early on a bad ``--out``/``--sections`` and cleans up on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("plotly")

from toolkit.__main__ import main
from toolkit.report import ReportContext, build_report, register_section
from toolkit.report._registry import _SECTIONS


@pytest.fixture
def section():
    """Register the tiny section ``tiny-for-test``; ``section.action`` runs inside it."""

    class _Probe:
        calls = 0
        action = None

    probe = _Probe()

    @register_section("tiny-for-test", "Tiny", order=1)
    def _tiny(ctx: ReportContext):
        probe.calls += 1
        if probe.action is not None:
            probe.action()
        return ["<p>tiny</p>"]

    yield probe
    _SECTIONS.pop("tiny-for-test")


def _cli(out, *extra):
    return main(
        ["report", "--out", str(out), "--no-progress", "--sections", "tiny-for-test", *extra]
    )


def test_tiny_section_writes(tmp_path, section):
    out = tmp_path / "r.html"
    assert _cli(out) == 0 and section.calls == 1
    assert "<p>tiny</p>" in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


@pytest.mark.parametrize("where", ["file-as-folder", "proc", "read-only"])
def test_unwritable_out_fails_before_any_section(tmp_path, section, capsys, where):
    if where == "file-as-folder":
        (tmp_path / "plain.txt").write_text("x")
        out = tmp_path / "plain.txt" / "r.html"
    elif where == "proc":
        if not Path("/proc").is_dir():
            pytest.skip("no /proc")
        out = Path("/proc/r.html")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes to read-only folders")
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        out = folder / "r.html"
    with pytest.raises(ValueError, match="out") as info:
        build_report(out, sections=["tiny-for-test"], progress=False)
    assert str(out) in str(info.value) and ".tmp" not in str(info.value)
    assert _cli(out) == 1
    err = capsys.readouterr().err
    assert err.startswith("toolkit report: error: out") and str(out) in err
    assert section.calls == 0, "no section may run when out cannot be written"


@pytest.mark.parametrize("value", ["", " , ", ","])
def test_empty_sections_is_an_error(tmp_path, section, capsys, value):
    out = tmp_path / "r.html"
    assert _cli(out, "--sections", value) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sections" in err
    assert "environment" in err and "tiny-for-test" in err, "the message lists the keys"
    assert section.calls == 0 and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="at least one section"):
        build_report(out, sections=[], progress=False)


def test_sigterm_during_write_removes_temp_file(tmp_path, section, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace_then_sigterm(src, dst):
        seen.append(Path(src))
        assert Path(src).exists() and Path(src).name.startswith(".r.html.")
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises before the rename
        time.sleep(1)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as info:
        build_report(tmp_path / "r.html", sections=["tiny-for-test"], progress=False)
    assert info.value.code == 128 + signal.SIGTERM
    assert len(seen) == 1 and list(tmp_path.iterdir()) == [], "no half-written file remains"
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is restored"


def test_sigterm_and_sigint_print_one_line(tmp_path, section, capsys):
    out = tmp_path / "r.html"
    section.action = lambda: os.kill(os.getpid(), signal.SIGTERM)
    assert _cli(out) == 143
    assert capsys.readouterr().err == "toolkit report: terminated\n"

    def interrupt():
        raise KeyboardInterrupt

    section.action = interrupt
    assert _cli(out) == 130
    assert capsys.readouterr().err == "toolkit report: interrupted\n"
    assert list(tmp_path.iterdir()) == []


def test_handler_untouched_off_the_main_thread(tmp_path, section):
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    section.action = lambda: seen.append(signal.getsignal(signal.SIGTERM))
    worker = threading.Thread(
        target=build_report,
        args=(tmp_path / "r.html",),
        kwargs={"sections": ["tiny-for-test"], "progress": False},
    )
    worker.start()
    worker.join()
    assert seen == [before] and (tmp_path / "r.html").exists()
    seen.clear()
    build_report(tmp_path / "s.html", sections=["tiny-for-test"], progress=False)
    assert seen[0] is not before, "the main thread installs its own handler while it runs"
    assert signal.getsignal(signal.SIGTERM) is before


_SLEEPY = textwrap.dedent(
    """
    import sys, time
    from toolkit.__main__ import main
    from toolkit.report import register_section

    @register_section("sleepy", "Sleepy")
    def _sleepy(ctx):
        print("running", flush=True)
        time.sleep(30)
        return []

    sys.exit(main(["report", "--out", sys.argv[1], "--sections", "sleepy", "--no-progress"]))
    """
)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_real_signal_to_the_command(tmp_path, signum, code):
    out = tmp_path / "r.html"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLEEPY, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout.readline() == "running\n"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
