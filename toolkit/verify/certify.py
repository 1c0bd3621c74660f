"""Certify a whole data set: every sentence, every position, over the GPUs of one host.

:func:`certify_dataset` cuts the data set into *chunks* (up to ``batch_size`` sentences of
one length, in input order) and lets the processes of a ``torch.distributed`` group take
them from a shared work queue: largest estimated work first (sentences x positions x
length), one chunk per claim, each claim one atomic ``add`` on the group's key-value store.
A radius bisection's cost varies by sentence, so no split fixed in advance keeps the ranks
equally busy; with the queue a rank whose chunks turn out slow just claims fewer, and every
rank works until the queue is empty.  Each process certifies its chunks on its own device,
and every rank gathers the results in input order.  The chunks do not depend on the number
of processes or on who claims them, so a chunk's numbers are the same whichever rank
computed it: one process and N processes (and a resumed run) give bit-identical results on
the same kind of device.  ``meta["ranks"]`` records per rank the chunks it did
(``chunk_ids``, in the order done) and the seconds of each (``chunk_seconds``), its busy
seconds (``busy``: their sum) and its seconds from the start to its last chunk
(``seconds``).

**Launching on several GPUs.**  Write a script that calls :func:`certify_dataset` and run
it with ``torchrun``, one process per GPU::

    torchrun --standalone --nproc-per-node 4 my_certify.py

Each process finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment;
:func:`certify_dataset` then joins the group itself (NCCL when the processes compute on
GPUs, gloo on CPUs; or uses a group the script already initialised) and computes on
``cuda:{LOCAL_RANK}``.  Without ``torchrun`` it runs in one process (world size 1).  Every
rank returns the full result; only rank 0 writes ``out``.  ``benchmarks/bench_certify.py``
times 1 against N GPUs this way.

**Robustness.**  An exception in the work on a chunk is caught, recorded in
:attr:`Certification.failures` (the sentences, the rank, the error) and the other chunks
go on; the ranks then exchange their results in one collective under the group's timeout,
so no rank waits forever for a crashed one.  With ``out`` every finished chunk is written at
once to ``<out>.parts/`` (temporary file, then rename); ``resume=True`` skips the chunks
found there (failed chunks are retried) and gives the same final result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._backend import resolve_device
from .._checks import check_flag, check_int, check_positive, check_real
from ._certify_store import (
    Certification,
    ShardFailure,
    certification_box_data,
    certification_figure,
    certification_title,
    load_certification,
)
from ._certify_work import Group, plan, run_certification, shard_chunks
from .api import _check_options
from .interface import VerifiableModel, as_int_tensor, check_model
from .methods import MethodName, get_method
from .specs import LpBall, PNorm, Synonyms, _position_list, normalize_p

__all__ = [
    "Certification",
    "RadiusSearch",
    "ShardFailure",
    "certification_box_data",
    "certification_figure",
    "certification_title",
    "certify_dataset",
    "load_certification",
    "shard_chunks",
]

#: the bound options passed through to certified_radius / margin_bounds
OPTION_NAMES = ("memory_limit", "chunk_size", "alpha_steps", "alpha_lr")


@dataclass(frozen=True)
class RadiusSearch:
    """The certified-radius search :func:`certify_dataset` runs at every position.

    Bisection on ``[0, max_eps]`` to within ``tol`` of the largest Lp radius ``method``
    certifies (:func:`~toolkit.verify.certified_radius`).

    Parameters
    ----------
    p : 1, 2, float('inf') or "inf"
        The norm.
    tol : float
        Resolution (> 0, < ``max_eps``).
    max_eps : float
        Upper end of the search.
    method : str or None
        The bound method; None leaves it to :func:`certify_dataset`'s ``method``.

    Examples
    --------
    >>> RadiusSearch(p="inf", tol=0.01, max_eps=0.5)
    RadiusSearch(p=inf, tol=0.01, max_eps=0.5, method=None)
    """

    p: PNorm = 2
    tol: float = 1e-3
    max_eps: float = 1.0
    method: MethodName | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "p", normalize_p(self.p))
        set_(self, "tol", check_positive("tol", self.tol))
        set_(self, "max_eps", check_real("max_eps", self.max_eps, 0.0, lo_open=True))
        if self.tol >= self.max_eps:
            raise ValueError(
                f"tol must be smaller than max_eps={self.max_eps!r}, got tol={self.tol!r}"
            )
        if self.method is not None:
            set_(self, "method", get_method(self.method).name)


def _sentences(model: VerifiableModel, sentences: object) -> list[Tensor]:
    if isinstance(sentences, (str, bytes, Mapping)) or not isinstance(
        sentences, (Sequence, Tensor)
    ):
        raise TypeError(
            "sentences must be a sequence of token-id sequences (or an integer tensor "
            f"[N, T]), got {type(sentences).__name__}"
        )
    out = []
    for i, s in enumerate(sentences):
        ids = as_int_tensor(f"sentences[{i}]", s).detach().cpu().long()
        if ids.dim() != 1 or not 1 <= ids.numel() <= model.max_len:
            raise ValueError(
                f"sentences[{i}] must be 1-d token ids of length 1 to max_len="
                f"{model.max_len}, got shape {tuple(ids.shape)}"
            )
        V = model.embedding.num_embeddings
        if int(ids.min()) < 0 or int(ids.max()) >= V:
            raise ValueError(
                f"sentences[{i}] must hold ids in [0, {V}), got range "
                f"[{int(ids.min())}, {int(ids.max())}]"
            )
        out.append(ids)
    if not out:
        raise ValueError("sentences must hold at least one sentence, got none")
    return out


def _mode(spec: object, method: object) -> tuple[str, dict[str, Any]]:
    """``("radius" | "margin", settings)`` of ``spec_or_radius_search``."""
    if isinstance(spec, Mapping):
        unknown = set(spec) - {f.name for f in dataclasses.fields(RadiusSearch)}
        if unknown:
            raise ValueError(
                f"spec_or_radius_search as a dict takes the keys p, tol, max_eps, method; "
                f"got unknown keys {sorted(unknown)}"
            )
        spec = RadiusSearch(**spec)
    if method is not None:
        method = get_method(method).name
    if isinstance(spec, RadiusSearch):
        if spec.method is not None and method is not None and spec.method != method:
            raise ValueError(
                f"method={method!r} contradicts spec_or_radius_search.method={spec.method!r}"
            )
        m = spec.method or method or "crown"
        return "radius", dict(method=m, p=spec.p, tol=spec.tol, max_eps=spec.max_eps)
    if isinstance(spec, LpBall):
        eps = spec.eps
        if isinstance(eps, Tensor):
            if eps.numel() != 1:
                raise ValueError(
                    "spec_or_radius_search.eps must be one radius for the whole data set, "
                    f"got a tensor of {eps.numel()} entries"
                )
            eps = float(eps)
        return "margin", dict(method=method or "crown", p=spec.p, eps=float(eps))
    if isinstance(spec, Synonyms):
        raise TypeError(
            "spec_or_radius_search must be an LpBall or a RadiusSearch (or a dict of one); "
            "Synonyms candidates belong to one batch of sentences, not a data set"
        )
    raise TypeError(
        "spec_or_radius_search must be an LpBall, a RadiusSearch or a dict with keys p, tol, "
        f"max_eps, method; got {type(spec).__name__}"
    )


def certify_dataset(
    model: VerifiableModel,
    sentences: Sequence[Sequence[int] | Tensor] | Tensor,
    spec_or_radius_search: LpBall | RadiusSearch | Mapping[str, Any],
    *,
    labels: Sequence[int] | Tensor | None = None,
    method: MethodName | None = None,
    positions: Sequence[int] | None = None,
    batch_size: int = 16,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    device: str | torch.device | None = None,
    timeout: float = 1800.0,
    options: Mapping[str, Any] | None = None,
) -> Certification:
    """Certify every position of every sentence of a data set, on one or several processes.

    With a :class:`RadiusSearch` the result is a certified radius per (sentence, position):
    the Lp ball on that word alone (:func:`~toolkit.verify.certified_radius`).  With a fixed
    :class:`~toolkit.verify.LpBall` it is the lower bound on the worst margin
    :math:`\\min_{j \\ne y} z_y - z_j` with that ball on the word alone: the position is
    certified at ``eps`` where it is > 0 (the margin also tells by how much).

    Run under ``torchrun`` it spreads the chunks over the processes (module docstring); in a
    plain process it computes everything itself.

    Parameters
    ----------
    model : VerifiableModel
        The classifier (not modified; each process bounds a float64 copy on its device).
    sentences : sequence of token-id sequences, or integer tensor [N, T]
        The data set; sentences may differ in length (at most ``model.max_len``).
    spec_or_radius_search : LpBall or RadiusSearch or dict
        A fixed ball (its ``eps`` and ``p``; its ``positions``, if set, are the positions
        certified unless ``positions`` is given), or a radius search (a dict is read as
        ``RadiusSearch(**d)``).
    labels : sequence of int or Tensor, optional
        The class of every sentence; default: the model's prediction.
    method : {"ibp", "crown", "forward", "baf", "alpha-crown"}, optional
        The bound method (default ``"crown"``, or the radius search's own).
    positions : sequence of int, optional
        Positions to certify, each alone; default every position of each sentence.
        Positions past a sentence's end are skipped for it (NaN).
    batch_size : int
        Sentences per chunk: the unit of one bound computation, of the work queue and of the
        resume files.  Results depend on it in the last bits only.
    out : str or os.PathLike, optional
        Result file (``.npz``, read by :func:`load_certification`), written by rank 0 at
        the end; finished chunks go to ``<out>.parts/`` as they finish.
    resume : bool
        Skip the chunks already in ``<out>.parts/`` (a ValueError if they belong to a
        different run); needs ``out``.
    progress : bool
        A progress bar (``tqdm.auto``) on rank 0 over the chunks done by all ranks.
    device : str or torch.device, optional
        Where to compute; default ``cuda:{LOCAL_RANK}`` when torch sees a GPU, else the CPU.
    timeout : float
        Seconds a collective may wait before it fails (when this call joins the group).
    options : mapping, optional
        ``memory_limit``, ``chunk_size``, ``alpha_steps``, ``alpha_lr`` for the bound calls.

    Returns
    -------
    Certification
        On every rank, in input order; failed chunks are listed in ``failures``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments, naming them (raised on every rank before any work).
    RuntimeError
        When the ranks cannot share the work queue or exchange their results (a rank
        crashed or timed out); the finished chunks are in ``<out>.parts/`` for
        ``resume=True``.

    Examples
    --------
    A small random model, three sentences of different lengths, a radius at every position
    (the shipped model and :func:`~toolkit.verify.make_dataset` work the same way):

    >>> import numpy as np
    >>> from toolkit.verify import TransformerClassifier
    >>> _ = torch.manual_seed(0)
    >>> model = TransformerClassifier(30, dim=8, heads=2, ffn_dim=16, max_len=8)
    >>> data = [[1, 2, 3], [4, 5, 6, 7], [8, 9]]
    >>> c = certify_dataset(model, data, RadiusSearch(tol=0.1), progress=False)
    >>> c.kind, c.values.shape, c.failures, int(np.isnan(c.values).sum())
    ('radius', (3, 4), (), 3)
    >>> bool((c.values[0, :3] > 0).all())
    True
    """
    check_model(model)
    data = _sentences(model, sentences)
    N = len(data)
    kind, settings = _mode(spec_or_radius_search, method)
    label_list = None
    if labels is not None:
        y = as_int_tensor("labels", labels).reshape(-1)
        C = model.num_classes
        if y.numel() != N or bool(((y < 0) | (y >= C)).any()):
            got = f" in [{int(y.min())}, {int(y.max())}]" if y.numel() else ""
            raise ValueError(
                f"labels must hold N={N} classes in [0, {C}), got {y.numel()} entries{got}"
            )
        label_list = [int(v) for v in y]
    if positions is None and isinstance(spec_or_radius_search, LpBall):
        positions = spec_or_radius_search.positions
    pos = None if positions is None else sorted(_position_list(positions))
    batch_size = check_int("batch_size", batch_size)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike) or None, got {out!r}")
    check_flag("resume", resume)
    check_flag("progress", progress)
    if resume and out is None:
        raise ValueError("resume=True needs out, the result path whose parts it resumes")
    timeout = check_positive("timeout", timeout)
    opts = dict(options or {})
    unknown = set(opts) - set(OPTION_NAMES)
    if unknown:
        raise ValueError(f"options takes the keys {list(OPTION_NAMES)}; got {sorted(unknown)}")
    _check_options(**opts)
    if device is not None:
        resolve_device(device, "device")

    chunks = plan([len(s) for s in data], pos, batch_size)
    group = Group(device, timeout)
    try:
        path = None if out is None else Path(out)
        run = (kind, settings, pos, batch_size, opts)
        return run_certification(
            model, data, label_list, run, chunks, group, path, resume, progress
        )
    finally:
        group.close()
