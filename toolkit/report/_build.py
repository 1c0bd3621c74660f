"""Running the sections and writing the report atomically."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from ._html import render_block, render_page
from ._registry import ReportContext, Section, all_sections

__all__ = ["ReportError", "build_report"]


class ReportError(RuntimeError):
    """A report section failed.

    Parameters
    ----------
    section : str
        The failing section's key.
    cause : BaseException
        The error it raised (also chained as ``__cause__``).

    Attributes
    ----------
    section : str
        The failing section's key.
    """

    def __init__(self, section: str, cause: BaseException) -> None:
        super().__init__(f"report section {section!r} failed: {type(cause).__name__}: {cause}")
        self.section = section


def _check_writable(out: Path) -> None:
    """Raise ValueError naming ``out`` unless a file can be written beside it."""
    if out.exists() and out.is_dir():
        raise ValueError(f"out must be a file path, got the directory {out}")
    if not out.parent.exists():
        raise ValueError(f"out's folder {out.parent} does not exist")
    if not out.parent.is_dir():
        raise ValueError(f"out's folder {out.parent} is not a directory (out={out})")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise ValueError(
            f"out {out} cannot be written: its folder {out.parent}: {exc.strerror}"
        ) from exc
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while the block runs, so cleanup code runs.

    Only the main thread may set signal handlers; elsewhere the block runs unchanged.  The
    previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_report(
    out: str | os.PathLike = "report.html",
    *,
    quick: bool = False,
    sections: list[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Run every registered section and write one self-contained HTML file to ``out``.

    The folder of ``out`` is checked for writing before any section runs.  The page is
    written to a temporary file beside ``out`` and renamed at the end, so a failure leaves no
    half-written report; in the main thread SIGTERM becomes ``SystemExit(143)`` while the
    report runs (the previous handler is restored afterwards), so it too leaves nothing
    behind.  plotly's JavaScript is inline: the file opens offline.

    Parameters
    ----------
    out : str or os.PathLike
        The HTML file to write; its folder must exist.
    quick : bool
        Shrink the sizes for a fast run.
    sections : list of str or None
        Section keys to run, in this order (at least one); None runs all, in report order.
    seed : int
        Seed of every section's randomness.
    progress : bool
        Show a progress bar over the sections.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``out`` is a folder, its folder is missing or cannot be written, ``sections`` is
        empty or a section key is unknown.
    SystemExit
        With code 143 on SIGTERM (main thread only); nothing is written then.
    ReportError
        If a section fails; nothing is written then.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = build_report(pathlib.Path(tmp) / "r.html", sections=["environment"],
    ...                         progress=False)
    ...     path.read_text().startswith("<!DOCTYPE html>")
    True
    """
    out = Path(out)
    _check_writable(out)
    chosen = all_sections(sections)
    with _sigterm_raises():
        return _run_and_write(out, chosen, quick=quick, seed=seed, progress=progress)


def _run_and_write(
    out: Path, chosen: list[Section], *, quick: bool, seed: int, progress: bool
) -> Path:
    """Run ``chosen`` and write the page to ``out`` through a temporary file."""
    from tqdm.auto import tqdm

    import toolkit

    ctx = ReportContext(quick=quick, seed=seed, device="cuda" if toolkit.gpu_available() else "cpu")
    rendered = []
    bar = tqdm(chosen, desc="report", unit="section", disable=not progress)
    for section in bar:
        bar.set_postfix_str(section.key)
        try:
            body = "".join(render_block(b) for b in section.build(ctx))
        except Exception as exc:
            raise ReportError(section.key, exc) from exc
        rendered.append((section.key, section.title, body))
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    footer = f"toolkit {toolkit.__version__}, {stamp}, {'quick' if quick else 'full'} mode"
    page = render_page("toolkit report", rendered, footer)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
