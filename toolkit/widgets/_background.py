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

__all__ = ["BackgroundTask", "Cancelled", "ProgressBar"]


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
