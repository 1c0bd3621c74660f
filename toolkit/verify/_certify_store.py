"""The result of :func:`~toolkit.verify.certify_dataset` and its files.

:class:`Certification` holds the per-(sentence, position) values as one padded array;
:class:`PartStore` keeps the finished chunks of a run as one small JSON file each (written to
a temporary name and renamed, so a crash or Ctrl-C never leaves a half-written part) and is
what a restarted run resumes from; :func:`load_certification` reads a final result file
(``.npz``, also written through a temporary name).  Floats go through JSON as Python's
shortest round-trip ``repr``, so a resumed run reproduces every bit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "Certification",
    "CertificationKind",
    "PartStore",
    "ShardFailure",
    "certification_figure",
    "load_certification",
]

#: what the values of a :class:`Certification` are
CertificationKind = Literal["radius", "margin"]
_FORMAT = 1


@dataclass(frozen=True)
class ShardFailure:
    """Sentences whose work raised: their indices (into the input), the rank that ran them,
    the exception as ``"Type: message"`` and its traceback."""

    sentences: tuple[int, ...]
    rank: int
    error: str
    traceback: str = ""


@dataclass(frozen=True, eq=False)
class Certification:
    """Certified values of a whole data set, in input order.

    Attributes
    ----------
    kind : {"radius", "margin"}
        ``"radius"``: ``values[i, t]`` is the certified radius of position ``t`` of sentence
        ``i`` (:func:`~toolkit.verify.certified_radius`; ``max_eps`` means at least that).
        ``"margin"``: the lower bound on :math:`\\min_{j \\ne y} z_y - z_j` with the fixed
        ball on position ``t`` alone; the position is certified where it is > 0.
    values : ndarray
        float64 ``[N, T_max]``; NaN where nothing was computed (past a sentence's end, a
        position not asked for, a failed sentence).
    lengths, labels : ndarray
        int64 ``[N]``: token counts, and the class certified (given, or the model's
        prediction; -1 for a failed sentence whose label was not given).
    failures : tuple of ShardFailure
        The work that raised (its sentences keep NaN values).
    meta : dict
        The run's settings (method, norm, eps or tol/max_eps, positions, batch size,
        world size, seconds).
    """

    kind: CertificationKind
    values: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    failures: tuple[ShardFailure, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def certified(self) -> np.ndarray:
        """bool ``[N, T_max]``: margin > 0, or radius > 0 (NaN counts as not certified)."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.values, nan=-1.0) > 0

    @property
    def failed_sentences(self) -> list[int]:
        """Sorted indices of the sentences whose work raised."""
        return sorted({i for f in self.failures for i in f.sentences})

    def by_position(self) -> list[np.ndarray]:
        """For every position ``t < T_max``, the computed values at ``t`` (NaN dropped)."""
        return [col[~np.isnan(col)] for col in self.values.T]

    def same_values(self, other: Certification) -> bool:
        """Bit-for-bit equal kind, values, lengths, labels and failed sentences."""
        return (
            self.kind == other.kind
            and self.values.shape == other.values.shape
            and bool(np.array_equal(self.values, other.values, equal_nan=True))
            and bool(np.array_equal(self.lengths, other.lengths))
            and bool(np.array_equal(self.labels, other.labels))
            and self.failed_sentences == other.failed_sentences
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (``.npz``) through a temporary file and a rename."""
        path = Path(path)
        head = {
            "format": _FORMAT,
            "kind": self.kind,
            "meta": self.meta,
            "failures": [vars(f) | {"sentences": list(f.sentences)} for f in self.failures],
        }
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    values=self.values,
                    lengths=self.lengths,
                    labels=self.labels,
                    head=np.array(json.dumps(head)),
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path


def load_certification(path: str | os.PathLike) -> Certification:
    """Read a result written by :func:`~toolkit.verify.certify_dataset` (``out=``).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file.

    Returns
    -------
    Certification

    Raises
    ------
    FileNotFoundError, ValueError
        When the file is missing or is not a certification result.

    Examples
    --------
    >>> import tempfile, os
    >>> c = Certification("radius", np.array([[0.5, np.nan]]), np.array([1]), np.array([0]))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     load_certification(c.save(os.path.join(d, "c.npz"))).same_values(c)
    True
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such certification file")
    try:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(str(z["head"]))
            values, lengths, labels = z["values"], z["lengths"], z["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(
            f"path={str(path)!r} is not a certification result written by certify_dataset "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if head.get("format") != _FORMAT or head.get("kind") not in ("radius", "margin"):
        raise ValueError(f"path={str(path)!r}: unknown certification format {head!r:.80}")
    failures = tuple(
        ShardFailure(tuple(f["sentences"]), f["rank"], f["error"], f.get("traceback", ""))
        for f in head["failures"]
    )
    return Certification(head["kind"], values, lengths, labels, failures, head["meta"])


class PartStore:
    """Finished chunks of one run under ``<out>.parts/``: ``manifest.json`` (the run's
    fingerprint) and ``chunk-NNNNNN.json`` per chunk (sentence indices, labels, values)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out.with_name(out.name + ".parts")

    def _chunk_path(self, cid: int) -> Path:
        return self.dir / f"chunk-{cid:06d}.json"

    def prepare(self, fingerprint: str, resume: bool) -> set[int]:
        """Start the parts directory (a fresh run clears the old parts) and return the ids of
        the chunks already finished (none unless ``resume``)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        if resume and manifest.exists():
            old = json.loads(manifest.read_text()).get("fingerprint")
            if old != fingerprint:
                raise ValueError(
                    f"resume=True but {str(self.dir)!r} holds parts of a different run (other "
                    "model, sentences, labels, spec, method, positions or batch_size); use "
                    "resume=False to start afresh, or another out path"
                )
            return {int(p.stem.split("-")[1]) for p in self.dir.glob("chunk-*.json")}
        for p in self.dir.glob("chunk-*.json"):
            p.unlink()
        _atomic_write(manifest, json.dumps({"format": _FORMAT, "fingerprint": fingerprint}))
        return set()

    def write(self, cid: int, sentences: Iterable[int], labels: np.ndarray, values: np.ndarray):
        rec = {
            "chunk": cid,
            "sentences": [int(i) for i in sentences],
            "labels": [int(y) for y in labels],
            "values": [[float(v) for v in row] for row in values],
        }
        _atomic_write(self._chunk_path(cid), json.dumps(rec))

    def read(self, cid: int) -> tuple[list[int], np.ndarray, np.ndarray]:
        rec = json.loads(self._chunk_path(cid).read_text())
        return (
            rec["sentences"],
            np.array(rec["labels"], dtype=np.int64),
            np.array(rec["values"], dtype=np.float64),
        )


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def certification_figure(cert: Certification | None = None, *, title: str | None = None) -> Any:
    """A plotly figure: the distribution of the values over sentences, one box per position.

    One ``go.Box`` trace (named ``"certified radius"`` or ``"margin lower bound"``) whose
    ``x`` is the position and ``y`` the value of every (sentence, position) computed; with
    ``cert=None`` the trace is empty (an explorer fills it in place later, see
    :func:`certification_box_data`).  Needs plotly.

    Examples
    --------
    >>> c = Certification("radius", np.array([[0.5, 0.25], [0.75, np.nan]]),
    ...                   np.array([2, 1]), np.array([0, 1]))
    >>> fig = certification_figure(c)                       # doctest: +SKIP
    >>> list(fig.data[0].x), list(fig.data[0].y)            # doctest: +SKIP
    ([0, 0, 1], [0.5, 0.75, 0.25])
    """
    import plotly.graph_objects as go

    kind = "radius" if cert is None else cert.kind
    x, y = certification_box_data(cert)
    fig = go.Figure()
    fig.add_box(
        x=x,
        y=y,
        name=_TRACE_NAME[kind],
        boxpoints="outliers",
        marker=dict(color="#1f77b4"),
    )
    fig.update_layout(
        title=title or certification_title(cert),
        xaxis_title="word position",
        yaxis_title=_TRACE_NAME[kind],
        height=360,
        showlegend=False,
    )
    return fig


_TRACE_NAME = {"radius": "certified radius", "margin": "margin lower bound"}


def certification_box_data(cert: Certification | None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: position and value of every computed (sentence, position), position-major
    (the data of :func:`certification_figure`'s box trace)."""
    if cert is None:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    cols = cert.by_position()
    x = np.concatenate([np.full(len(c), t, dtype=np.int64) for t, c in enumerate(cols)])
    y = np.concatenate(cols) if cols else np.zeros(0)
    return x, y


def certification_title(cert: Certification | None) -> str:
    """A one-line description of ``cert`` for a figure title."""
    if cert is None:
        return "certified radius per position (load a certification)"
    m = cert.meta
    p = m.get("p")
    norm = "" if p is None else f"ℓ{'∞' if p == math.inf or p == 'inf' else int(p)}"
    what = (
        f"certified {norm} radius per position ({m.get('method', '?')}, "
        f"searched up to {m.get('max_eps', '?')})"
        if cert.kind == "radius"
        else f"margin lower bound per position ({m.get('method', '?')}, {norm} ε={m.get('eps')})"
    )
    n = len(cert.lengths)
    bad = len(cert.failed_sentences)
    return f"{what}: {n} sentence{'s' * (n != 1)}" + (f", {bad} failed" if bad else "")
