"""Long work of an explorer in a background thread: a progress bar that moves, and Cancel.

The kernel stays free while a job runs (controls keep answering), the bar follows the
``progress(done, total)`` callbacks that the toolkit's long functions already take, and
Cancel makes the next callback raise :class:`Cancelled`, which ends the job between two
units of work.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as W

__all__ = ["BackgroundTask", "Cancelled", "LatestOnly", "ProgressBar"]


class Cancelled(Exception):
    """Raised inside a job's progress callback once Cancel was pressed."""


class ProgressBar:
    """A progress callback ``bar(done, total)`` drawn as an ipywidgets bar with a count.

    It is a plain widget that stays alive as long as the object does, so a notebook saved
    with it shows it again after a reopen (a ``tqdm`` widget closed at the end does not).

    Parameters
    ----------
    description : str
        The label in front of the bar.

    Examples
    --------
    >>> bar = ProgressBar("networks")
    >>> for done in range(1, 4):
    ...     bar(done, 3)
    >>> bar.progress.value, bar.progress.max, bar.label.value
    (3, 3, '3 / 3')
    """

    def __init__(self, description: str = "") -> None:
        if not isinstance(description, str):
            raise TypeError(f"description must be a str, got {type(description).__name__}")
        self.progress = W.IntProgress(value=0, min=0, max=1, description=description)
        self.label = W.Label("")
        self.widget = W.HBox([self.progress, self.label])

    def __call__(self, done: int, total: int) -> None:
        total = max(int(total), 1)
        self.progress.max = total
        self.progress.value = min(int(done), total)
        self.label.value = f"{int(done)} / {total}"

    def reset(self, total: int = 1) -> None:
        """Empty bar for a new job of ``total`` units."""
        self.progress.max, self.progress.value, self.label.value = max(int(total), 1), 0, ""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class BackgroundTask:
    """One long job at a time, run in a thread with a progress bar and a Cancel button.

    ``start(job)`` calls ``job(step)`` in a daemon thread, where ``step(done, total)`` moves
    the bar and raises :class:`Cancelled` once :meth:`cancel` was called; ``on_done(result)``
    runs after a job that finished.  The status label says what happened (finished,
    cancelled, or the error).

    Parameters
    ----------
    description : str
        The bar's label.

    Examples
    --------
    >>> task = BackgroundTask("steps")
    >>> def job(step):
    ...     for i in range(5):
    ...         step(i + 1, 5)
    ...     return "done"
    >>> task.start(job).join()
    >>> task.result, task.bar.progress.value, task.state
    ('done', 5, 'finished')
    """

    def __init__(self, description: str = "") -> None:
        self.bar = ProgressBar(description)
        self.cancel_button = W.Button(description="Cancel", icon="stop", disabled=True)
        self.cancel_button.layout.width = "90px"
        self.cancel_button.on_click(lambda _b: self.cancel())
        self.message = W.HTML("")
        self.widget = W.VBox([W.HBox([self.bar.widget, self.cancel_button]), self.message])
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        #: "idle", "running", "finished", "cancelled" or "failed"
        self.state = "idle"
        self.result: Any = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        """True while a job runs."""
        return self._thread is not None and self._thread.is_alive()

    def step(self, done: int, total: int) -> None:
        """The progress callback handed to the job."""
        if self._cancel.is_set():
            raise Cancelled
        self.bar(done, total)

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress callback."""
        if self.running:
            self._cancel.set()
            self.message.value = "cancelling…"

    def start(
        self,
        job: Callable[[Callable[[int, int], None]], Any],
        on_done: Callable[[Any], None] | None = None,
    ) -> threading.Thread:
        """Run ``job(step)`` in a background thread; returns the thread.

        Raises
        ------
        RuntimeError
            If a job is already running.
        """
        if not callable(job):
            raise TypeError(f"job must be callable, got {type(job).__name__}")
        if self.running:
            raise RuntimeError("a job is already running; cancel it or wait for it to finish")
        self._cancel.clear()
        self.bar.reset()
        self.state, self.result, self.error = "running", None, None
        self.message.value = "running…"
        self.cancel_button.disabled = False
        self._thread = threading.Thread(target=self._run, args=(job, on_done), daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        """Wait for the running job (if any)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, job: Callable, on_done: Callable[[Any], None] | None) -> None:
        try:
            self.result = job(self.step)
            if on_done is not None:
                on_done(self.result)
        except Cancelled:
            self.state, self.message.value = "cancelled", "cancelled"
        except Exception as exc:  # a thread has nobody else to tell
            self.state, self.error = "failed", exc
            self.message.value = (
                f"<span style='color:#b00020'>{type(exc).__name__}: {html.escape(str(exc))}</span>"
            )
        else:
            self.state, self.message.value = "finished", "finished"
        finally:
            self.cancel_button.disabled = True


class LatestOnly:
    """Compute ``fn(key)`` in a background thread for the newest key asked for only.

    For work that is slow (seconds) but has no steps to report or stop between, such as a
    symbolic closed form: :meth:`submit` returns at once; one worker thread computes the
    newest key submitted, skipping keys that a newer one replaced while they waited, and
    calls ``on_result(key, value)`` (or ``on_error(key, exc)``) in that thread.

    Parameters
    ----------
    fn : callable
        ``fn(key) -> value``.
    on_result : callable
        ``on_result(key, value)``, called for every key computed.
    on_error : callable, optional
        ``on_error(key, exc)`` for an exception of ``fn`` (default: ignored).

    Examples
    --------
    >>> got = []
    >>> worker = LatestOnly(lambda k: k * k, lambda k, v: got.append((k, v)))
    >>> worker.submit(3)
    >>> worker.join()
    >>> got
    [(3, 9)]
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        on_result: Callable[[Any, Any], None],
        on_error: Callable[[Any, BaseException], None] | None = None,
    ) -> None:
        self._fn, self._on_result, self._on_error = fn, on_result, on_error
        self._lock = threading.Lock()
        self._wanted: list[Any] = []  # zero or one key: the newest not yet taken
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True while a key waits or is computed."""
        with self._lock:
            return bool(self._wanted) or (self._thread is not None and self._thread.is_alive())

    def submit(self, key: Any) -> None:
        """Ask for ``fn(key)``; replaces any key that has not started yet."""
        with self._lock:
            self._wanted[:] = [key]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, daemon=True)
                self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait until every key asked for so far is computed."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join(timeout)
            if thread.is_alive():  # timed out
                return

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._wanted:
                    self._thread = None
                    return
                key = self._wanted.pop()
            try:
                value = self._fn(key)
            except Exception as exc:  # a thread has nobody else to tell
                if self._on_error is not None:
                    self._on_error(key, exc)
            else:
                self._on_result(key, value)
