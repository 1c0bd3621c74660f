"""The speed panel of AttentionSparsityExplorer: the other side of the accuracy/speed trade-off.

A "Time" button runs :func:`toolkit.attention.time_attention` in the background (progress and
Cancel through :class:`~toolkit.widgets._background.BackgroundTask`) for dense attention (SDPA
and unfused), the explorer's current N:M pattern and DSA at its current sparsity, at the
sequence length the panel's dropdown holds, and draws the median times as bars labelled with
their speed-ups.  Kept apart from ``attention.py`` (already the longest explorer); the explorer
registers the figure and the control and calls :meth:`SpeedPanel.draw`.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go
import torch

from ..attention import PATTERN_STYLES, AttentionTiming, Pattern, time_attention
from ._background import BackgroundTask
from ._base import row

__all__ = ["SPEED_SIZES", "SpeedPanel", "SpeedSizes", "speed_colors"]


@dataclass(frozen=True)
class SpeedSizes:
    """What the panel times on one device type: the lengths offered, the default length, the
    heads (batch 1, head dim 64), and the timed and warm-up calls per entry."""

    lengths: tuple[int, ...]
    default: int
    heads: int
    repeats: int
    warmup: int


#: Per device type.  The CPU sizes keep one timing within seconds on a laptop; the GPU sizes
#: reach the lengths where the kernels pay (issue 14's table), within time_attention's bound
#: on batch * heads * L**2.
SPEED_SIZES: dict[str, SpeedSizes] = {
    "cpu": SpeedSizes((64, 128, 256, 512, 1024), 256, heads=4, repeats=3, warmup=1),
    "cuda": SpeedSizes((256, 512, 1024, 2048, 4096, 8192, 16384), 2048, 8, 10, 2),
}
_ANCHOR_COLORS = {"SDPA": PATTERN_STYLES["dense"].color, "unfused": "#bcbcbc"}
_CPU_NOTE = (
    "<b>CPU timings of the reference paths.</b> Here N:M and DSA compute the dense scores and "
    "then prune, so they are slower than dense attention by design; the fused N:M kernel and "
    "DSA's sparse kernel run on a CUDA GPU (float16/bfloat16, head dim 64 or 128), where this "
    "panel times them."
)
_GPU_NOTE = (
    "Timed on the GPU in float16 (batch 1, head dim 64), CUDA events around streams of calls: "
    "N:M runs the fused kernel and DSA the sparse kernel, prediction included, where they "
    "support the pattern (hover a bar for the path that ran). A speed-up is the anchor's time "
    "divided by the entry's."
)


def speed_colors(names: tuple[str, ...], patterns: tuple[Pattern, ...]) -> list[str]:
    """Bar colours: grey for the dense anchors, each pattern in its kind's colour.

    >>> from toolkit.attention import NM
    >>> speed_colors(("SDPA", "unfused", "2:4"), (NM(2, 4),))
    ['#7f7f7f', '#bcbcbc', '#1f77b4']
    """
    by_label = {p.label: p.style.color for p in patterns}
    return [_ANCHOR_COLORS.get(n) or by_label.get(n, "#333333") for n in names]


class SpeedPanel:
    """Controls, note and figure of the speed panel (see the module docstring).

    Parameters
    ----------
    device : torch.device
        Where the timings run (the explorer's model device).
    patterns : callable
        Returns the sparse patterns to time now (the explorer's N:M and DSA).
    figure : callable
        Returns the registered (live) figure to draw into.
    """

    def __init__(
        self,
        device: torch.device,
        patterns: Callable[[], tuple[Pattern, ...]],
        figure: Callable[[], go.Figure],
    ) -> None:
        self.device = device
        self.sizes = SPEED_SIZES["cuda" if device.type == "cuda" else "cpu"]
        self._patterns, self._figure = patterns, figure
        self.seq_len = W.Dropdown(
            options=self.sizes.lengths,
            value=self.sizes.default,
            description="sequence length",
            style={"description_width": "110px"},
        )
        self.button = W.Button(description="Time", icon="clock-o")
        self.button.on_click(lambda _b: self.start())
        self.task = BackgroundTask("methods")
        self.note = W.HTML(_GPU_NOTE if device.type == "cuda" else _CPU_NOTE)
        self.info = W.HTML("")
        #: The last timing drawn, and the patterns it timed.
        self.timing: AttentionTiming | None = None
        self.timed_patterns: tuple[Pattern, ...] = ()

    def blank_figure(self, names: tuple[str, ...]) -> go.Figure:
        """The complete figure before any timing: the bars named, no heights yet."""
        fig = go.Figure()
        fig.add_bar(
            x=list(names),
            y=np.full(len(names), np.nan),
            name="median time per call",
            marker_color=speed_colors(names, self._patterns()),
            text=[""] * len(names),
            textposition="outside",
            customdata=[""] * len(names),
            hovertemplate="%{x}: %{y:.4g} ms (%{customdata})<extra></extra>",
        )
        fig.update_layout(
            height=340,
            title="speed: press Time",
            yaxis=dict(title="ms per call (median)", rangemode="tozero"),
            margin=dict(t=60, b=40),
            showlegend=False,
            modebar=dict(orientation="v"),
        )
        return fig

    def layout(self, figure_box: W.Widget) -> W.Widget:
        """The panel: length, button, progress and Cancel, note, figure."""
        return W.VBox(
            [
                row(self.seq_len, self.button, self.task.widget),
                self.note,
                self.info,
                row(figure_box),
            ],
            layout=W.Layout(max_width="100%"),
        )

    def run(self, progress: Callable[[int, int], object] | None = None) -> AttentionTiming:
        """Time now (in this thread) at the dropdown's length and draw the result."""
        patterns = self._patterns()
        timing = time_attention(
            self.seq_len.value,
            patterns=patterns,
            heads=self.sizes.heads,
            device=self.device,
            repeats=self.sizes.repeats,
            warmup=self.sizes.warmup,
            progress=progress,
        )
        self.draw(timing, patterns)
        return timing

    def start(self) -> None:
        """What the Time button does: :meth:`run` in the background, with progress and Cancel."""
        self.button.disabled = True

        def job(step: Callable[[int, int], None]) -> AttentionTiming:
            try:
                return self.run(progress=step)
            finally:
                self.button.disabled = False

        self.task.start(job)

    def draw(self, t: AttentionTiming, patterns: tuple[Pattern, ...]) -> None:
        """Show ``t``: bar heights, speed-up labels, paths on hover, a title with the size."""
        self.timing, self.timed_patterns = t, patterns
        fig = self._figure()
        dtype = str(t.dtype).removeprefix("torch.")
        with fig.batch_update():
            bar = fig.data[0]
            bar.x = list(t.names)
            bar.y = np.array(t.median_ms)
            bar.text = [f"{a:.2f}× SDPA, {b:.2f}× unfused" for a, b in zip(t.vs_sdpa, t.vs_unfused)]
            bar.customdata = list(t.paths)
            bar.marker.color = speed_colors(t.names, patterns)
            fig.layout.title.text = (
                f"speed: L = {t.seq_len}, {t.heads} heads × d {t.head_dim}, {dtype}, {t.device}"
            )
        rows = "".join(
            f"<tr><td>{html.escape(r['name'])}</td><td>{r['median_ms']:.3g}</td>"
            f"<td>{r['vs_sdpa']:.2f}×</td><td>{r['vs_unfused']:.2f}×</td>"
            f"<td>{html.escape(r['path'])}</td></tr>"
            for r in t.rows()
        )
        self.info.value = (
            "<table><tr><th></th><th>ms</th><th>vs SDPA</th><th>vs unfused</th><th>path</th>"
            f"</tr>{rows}</table>"
        )
