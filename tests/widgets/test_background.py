"""Long work in the background: the bar reaches 100 %, Cancel stops the job, errors show."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("ipywidgets")

from toolkit.widgets._background import BackgroundTask, ProgressBar


def test_progress_reaches_the_total_and_the_result_is_kept():
    task, seen = BackgroundTask("units"), []

    def job(step):
        for i in range(1, 8):
            step(i, 7)
            seen.append(task.bar.progress.value)
        return sum(range(8))

    task.start(job).join(10)
    assert task.state == "finished" and task.result == 28
    assert seen == list(range(1, 8))
    assert task.bar.progress.value == task.bar.progress.max == 7
    assert task.cancel_button.disabled


def test_cancel_stops_the_job_between_units_and_the_kernel_stays_free():
    task, started, release = BackgroundTask(), threading.Event(), threading.Event()
    done = []

    def job(step):
        for i in range(1000):
            step(i, 1000)
            done.append(i)
            started.set()
            release.wait(5)
        return "never"

    task.start(job)
    assert started.wait(5)
    assert task.running and not task.cancel_button.disabled  # start() returned at once
    task.cancel_button.click()
    release.set()
    task.join(10)
    assert task.state == "cancelled" and task.result is None
    assert len(done) == 1  # the next progress call raised
    assert not task.running


def test_a_failing_job_reports_its_error_and_a_second_start_waits_for_the_first():
    task, gate = BackgroundTask(), threading.Event()

    def slow(step):
        gate.wait(5)
        raise ValueError("eps must be positive, got -1")

    task.start(slow)
    with pytest.raises(RuntimeError, match="already running"):
        task.start(slow)
    gate.set()
    task.join(10)
    assert task.state == "failed" and isinstance(task.error, ValueError)
    assert "eps must be positive" in task.message.value
    with pytest.raises(TypeError, match="job must be callable"):
        task.start(42)  # type: ignore[arg-type]


def test_progress_bar_is_a_callback():
    bar = ProgressBar("networks")
    bar(2, 5)
    assert (bar.progress.value, bar.progress.max, bar.label.value) == (2, 5, "2 / 5")
    with pytest.raises(TypeError, match="description must be a str"):
        ProgressBar(3)  # type: ignore[arg-type]


def test_explorer_run_button_runs_in_the_background_and_can_be_cancelled():
    from toolkit.widgets import IsometryExplorer

    ex = IsometryExplorer(depth=3, width=16, samples=4)
    ex.run_button.click()
    ex.task.join(60)
    assert ex.task.state == "finished"
    assert ex.progress.value == ex.progress.max == 8
    assert len(ex.figures["depth"].data[4].y) == 3  # the sampled overlay is drawn

    gate = threading.Event()
    real = ex.run

    def held_run(progress=None):
        def step(done, total):
            gate.wait(5)
            progress(done, total)

        return real(progress=step)

    ex.run = held_run  # type: ignore[method-assign]
    ex.run_button.click()
    assert ex.run_button.disabled
    ex.task.cancel()
    gate.set()
    ex.task.join(60)
    assert ex.task.state == "cancelled" and not ex.run_button.disabled


def test_latest_only_computes_the_newest_key_and_skips_replaced_ones():
    import threading

    from toolkit.widgets._background import LatestOnly

    started, release, got = threading.Event(), threading.Event(), []

    def fn(key):
        if key == 1:
            started.set()
            release.wait(30)
        return key * 10

    worker = LatestOnly(fn, lambda k, v: got.append((k, v)))
    worker.submit(1)
    assert started.wait(30)
    worker.submit(2)  # replaced by 3 before the worker takes it
    worker.submit(3)
    assert worker.busy
    release.set()
    worker.join(30)
    assert got == [(1, 10), (3, 30)] and not worker.busy


def test_latest_only_reports_errors():
    from toolkit.widgets._background import LatestOnly

    errors = []
    worker = LatestOnly(lambda k: 1 / k, lambda k, v: None, lambda k, e: errors.append((k, e)))
    worker.submit(0)
    worker.join(30)
    assert len(errors) == 1 and isinstance(errors[0][1], ZeroDivisionError)
