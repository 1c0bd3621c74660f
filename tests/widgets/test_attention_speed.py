"""The speed panel of AttentionSparsityExplorer, driven headless on the CPU.

Press Time, wait for the background job, read the bar figure: the names are the dense anchors
and the controls' N:M and DSA patterns, the heights the medians time_attention measured.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("plotly")
pytest.importorskip("ipywidgets")

import toolkit.widgets._attention_speed as speed_mod
from toolkit.attention import DSA, NM
from toolkit.widgets import AttentionSparsityExplorer
from toolkit.widgets._attention_speed import SPEED_SIZES


@pytest.fixture
def explorer():
    return AttentionSparsityExplorer("one two three four five", model="tiny", device="cpu")


def test_born_complete_with_a_cpu_note(explorer):
    fig = explorer.figures["speed"]
    assert len(fig.data) == 1 and fig.data[0].name == "median time per call"
    assert tuple(fig.data[0].x) == ("SDPA", "unfused", "2:4", "dsa@0.5")
    assert np.isnan(np.asarray(fig.data[0].y, dtype=float)).all()  # nothing timed yet
    assert "CPU timings" in explorer.speed.note.value and "CUDA" in explorer.speed.note.value
    seq = explorer.controls["seq_len"]
    assert seq.value == SPEED_SIZES["cpu"].default and max(seq.options) <= 1024


def test_time_button_draws_the_timings_of_the_current_patterns(explorer):
    redraws = []
    explorer.update = lambda: redraws.append(1)  # type: ignore[method-assign]
    explorer.controls["seq_len"].value = 64
    assert redraws == []  # the length only matters to the Time button
    explorer.update = type(explorer).update.__get__(explorer)  # type: ignore[method-assign]
    for name, value in dict(n=1, m=2, sparsity=0.75, rank=8).items():
        explorer.controls[name].value = value
    assert explorer.speed_patterns() == (NM(1, 2), DSA(0.25, 8, 4, 0))

    explorer.speed.button.click()
    explorer.speed.task.join(120)
    assert explorer.speed.task.state == "finished", explorer.speed.task.message.value
    assert not explorer.speed.button.disabled
    assert explorer.speed.task.bar.progress.value == explorer.speed.task.bar.progress.max == 4

    bar = explorer.figures["speed"].data[0]
    t = explorer.speed.timing
    assert tuple(bar.x) == t.names == ("SDPA", "unfused", "1:2", "dsa@0.25 r=8")
    y = np.asarray(bar.y, dtype=float)
    assert (y > 0).all() and np.isfinite(y).all()
    np.testing.assert_array_equal(y, t.median_ms)
    assert t.seq_len == 64 and t.heads == SPEED_SIZES["cpu"].heads
    assert tuple(bar.customdata) == t.paths and t.paths[2:] == ("reference", "reference")
    assert "L = 64" in explorer.figures["speed"].layout.title.text
    assert all("× SDPA" in s and "× unfused" in s for s in bar.text)
    assert "dsa@0.25 r=8" in explorer.speed.info.value


def test_cancel_leaves_the_figure_as_it_was(explorer, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow_timing(seq_len, *, progress, **kwargs):
        for i in range(1000):
            progress(i, 1000)
            started.set()
            release.wait(5)
        raise AssertionError("never reached: Cancel stops at the next progress call")

    monkeypatch.setattr(speed_mod, "time_attention", slow_timing)
    explorer.speed.button.click()
    assert started.wait(10) and explorer.speed.button.disabled
    explorer.speed.task.cancel_button.click()
    release.set()
    explorer.speed.task.join(10)
    assert explorer.speed.task.state == "cancelled" and not explorer.speed.button.disabled
    assert np.isnan(np.asarray(explorer.figures["speed"].data[0].y, dtype=float)).all()


def test_a_bad_pattern_is_reported_not_raised(explorer):
    explorer.controls["m"].value = 2
    explorer.controls["n"].value = 3  # the explorer's status shows the error too
    explorer.speed.start()
    explorer.speed.task.join(60)
    assert explorer.speed.task.state == "failed"
    assert "n must satisfy" in explorer.speed.task.message.value
    assert not explorer.speed.button.disabled
