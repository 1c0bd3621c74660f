"""Certify a whole data set: every sentence, every position, over the GPUs of one host.

:func:`certify_dataset` cuts the data set into *chunks* (up to ``batch_size`` sentences of
one length, in input order), deals the chunks to the processes of a ``torch.distributed``
group (longest-processing-time first, balanced by token count: the cost of a chunk is its
number of (sentence, position) pairs, its tokens when every position is certified), lets every process certify its chunks on its own device, and gathers
the results on every rank in input order.  The chunks do not depend on the number of
processes, so a chunk's numbers are the same whichever rank computed it: one process and
N processes (and a resumed run) give bit-identical results on the same kind of device.

Launching on several GPUs
-------------------------
Write a script that calls :func:`certify_dataset` and run it with ``torchrun``, one process
per GPU::

    torchrun --standalone --nproc-per-node 4 my_certify.py

Each process finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment;
:func:`certify_dataset` then joins the group itself (NCCL when the processes compute on
GPUs, gloo on CPUs; or uses a group the script already initialised) and computes on
``cuda:{LOCAL_RANK}``.  Without ``torchrun`` it runs in one process (world size 1).  Every
rank returns the full result; only rank 0 writes ``out``.  ``benchmarks/bench_certify.py``
times 1 against N GPUs this way.

Robustness: an exception in the work on a chunk is caught, recorded in
:attr:`Certification.failures` (the sentences, the rank, the error) and the other chunks
go on; the ranks then exchange their results in one collective under the group's timeout,
so no rank waits forever for a crashed one.  With ``out`` every finished chunk is written at
once to ``<out>.parts/`` (temporary file, then rename); ``resume=True`` skips the chunks
found there (failed chunks are retried) and gives the same final result.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._backend import resolve_device
from .._checks import check_flag, check_int, check_positive, check_real
from ._certify_store import (
    Certification,
    PartStore,
    ShardFailure,
    certification_box_data,
    certification_figure,
    certification_title,
    load_certification,
)
from .api import _check_options, _predict, certified_radius, margin_bounds
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

F64 = torch.float64
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


@dataclass(frozen=True)
class _Chunk:
    id: int
    sentences: tuple[int, ...]
    T: int
    positions: tuple[int, ...]

    @property
    def cost(self) -> int:
        """The (sentence, position) pairs: the token count when every position is asked."""
        return len(self.sentences) * len(self.positions)


def _plan(lengths: Sequence[int], positions: list[int] | None, batch_size: int) -> list[_Chunk]:
    """Chunks of up to ``batch_size`` sentences of one length, in order of first sentence;
    a sentence none of whose asked positions it has gets no chunk."""
    by_len: dict[int, list[int]] = {}
    for i, T in enumerate(lengths):
        by_len.setdefault(T, []).append(i)
    groups = []
    for T, idx in by_len.items():
        pos = tuple(range(T)) if positions is None else tuple(t for t in positions if t < T)
        if pos:
            groups += [(idx[k : k + batch_size], T, pos) for k in range(0, len(idx), batch_size)]
    groups.sort(key=lambda g: g[0][0])
    return [_Chunk(cid, tuple(idx), T, pos) for cid, (idx, T, pos) in enumerate(groups)]


def shard_chunks(costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Deal work items to ``world_size`` ranks, balanced by cost, deterministically.

    Longest processing time first: items by decreasing cost (ties by index) each go to the
    rank with the least cost so far (ties to the lower rank); each rank's items are returned
    in index order.  The heaviest rank carries at most 4/3 of the optimum (Graham, 1969).

    Parameters
    ----------
    costs : sequence of int
        The cost of every item (``certify_dataset`` uses the (sentence, position) pairs of a chunk).
    world_size : int
        Number of ranks.

    Returns
    -------
    list of list of int
        The item indices of every rank.

    Examples
    --------
    >>> shard_chunks([5, 1, 4, 2, 3], 2)
    [[0, 1, 3], [2, 4]]
    """
    check_int("world_size", world_size)
    load = [0] * world_size
    out: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        r = min(range(world_size), key=lambda r: (load[r], r))
        load[r] += costs[i]
        out[r].append(i)
    return [sorted(s) for s in out]


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


def _fingerprint(model, sentences, labels, kind, settings, positions, batch_size, options):
    h = hashlib.sha256()
    h.update(json.dumps([kind, settings, positions, batch_size, options], default=str).encode())
    for s in sentences:
        h.update(s.numpy().tobytes() + b"|")
    h.update(b"labels" + (b"none" if labels is None else np.asarray(labels).tobytes()))
    for k, v in model.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _Group:
    """The process group: joined from torchrun's environment when needed, left at exit if
    joined here.  World size 1 without torchrun (no group at all)."""

    def __init__(self, device: object, timeout: float) -> None:
        import torch.distributed as dist

        self.dist = dist
        self.owned = False
        env_world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        else:
            dev = resolve_device(device, "device")
            if dev.type == "cuda" and dev.index is None:
                dev = torch.device(f"cuda:{local}")
        self.device = dev
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if dist.is_available() and not dist.is_initialized() and env_world > 1:
            dist.init_process_group(
                "nccl" if dev.type == "cuda" else "gloo",
                timeout=datetime.timedelta(seconds=timeout),
            )
            self.owned = True
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def broadcast(self, obj: Any) -> Any:
        if not self.active:
            return obj
        box = [obj]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


def _run_chunk(work, chunk, sentences, labels, kind, settings, options, device):
    ids = torch.stack([sentences[i] for i in chunk.sentences]).to(device)
    e = work.embed(ids).detach()
    if labels is None:
        with torch.no_grad():
            y = _predict(work, e)
    else:
        y = torch.tensor([labels[i] for i in chunk.sentences], device=device)
    method, p = settings["method"], settings["p"]
    if kind == "radius":
        vals = certified_radius(
            work,
            e,
            y,
            list(chunk.positions),
            p=p,
            method=method,
            tol=settings["tol"],
            max_eps=settings["max_eps"],
            device=device,
            **options,
        )
    else:
        cols = []
        for t in chunk.positions:
            lo, _ = margin_bounds(
                work, e, LpBall(settings["eps"], p, [t]), y, method, device=device, **options
            )
            lo[torch.arange(len(y), device=lo.device), y] = math.inf
            cols.append(lo.amin(1))
        vals = torch.stack(cols, 1)
    return y.cpu().numpy(), vals.cpu().numpy()


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
        Sentences per chunk: the unit of one bound computation, of the sharding and of the
        resume files.  Results depend on it in the last bits only.
    out : str or os.PathLike, optional
        Result file (``.npz``, read by :func:`load_certification`), written by rank 0 at
        the end; finished chunks go to ``<out>.parts/`` as they finish.
    resume : bool
        Skip the chunks already in ``<out>.parts/`` (a ValueError if they belong to a
        different run); needs ``out``.
    progress : bool
        A progress bar (``tqdm.auto``) over rank 0's chunks.
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
        When the ranks cannot exchange their results (a rank crashed or timed out); the
        finished chunks are in ``<out>.parts/`` for ``resume=True``.

    Examples
    --------
    A small random model, three sentences of different lengths, a radius at every position
    (the shipped model and :func:`~toolkit.verify.make_dataset` work the same way):

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
            raise ValueError(
                f"labels must hold N={N} classes in [0, {C}), got {y.numel()} entries "
                f"in [{int(y.min())}, {int(y.max())}]"
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

    chunks = _plan([len(s) for s in data], pos, batch_size)
    group = _Group(device, timeout)
    try:
        path = None if out is None else Path(out)
        run = (kind, settings, pos, batch_size, opts)
        return _certify(model, data, label_list, run, chunks, group, path, resume, progress)
    finally:
        group.close()


def _certify(model, data, labels, run, chunks, group, out, resume, progress):
    kind, settings, pos, batch_size, opts = run
    start = time.perf_counter()
    store = None if out is None else PartStore(out)
    done: set[int] = set()
    if store is not None:
        fp = _fingerprint(model, data, labels, kind, settings, pos, batch_size, opts)
        answer: Any = None
        if group.rank == 0:
            try:
                answer = sorted(store.prepare(fp, resume))
            except (OSError, ValueError) as exc:
                answer = f"{type(exc).__name__}: {exc}"
        answer = group.broadcast(answer)  # also keeps the others off the directory until ready
        if isinstance(answer, str):
            raise (ValueError if answer.startswith("ValueError") else OSError)(answer)
        done = set(answer)
    todo = [c for c in chunks if c.id not in done]
    mine = [todo[i] for i in shard_chunks([c.cost for c in todo], group.world)[group.rank]]
    dev = group.device
    work = copy.deepcopy(model).to(device=dev, dtype=F64).eval()
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    failures: list[ShardFailure] = []
    bar = _bar(len(mine), progress and group.rank == 0, group)
    t0 = time.perf_counter()
    try:
        for chunk in mine:
            try:
                y, vals = _run_chunk(work, chunk, data, labels, kind, settings, opts, dev)
            except Exception as exc:  # reported in the result; the other chunks go on
                failures.append(
                    ShardFailure(
                        chunk.sentences,
                        group.rank,
                        f"{type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                    )
                )
            else:
                results[chunk.id] = (y, vals)
                if store is not None:
                    store.write(chunk.id, chunk.sentences, y, vals)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    stats = dict(chunks=len(mine), pairs=sum(c.cost for c in mine))
    stats["seconds"] = time.perf_counter() - t0
    try:
        gathered = group.gather((results, failures, stats))
    except Exception as exc:  # a peer died or timed out: say so instead of hanging
        raise RuntimeError(
            f"rank {group.rank} of {group.world}: the result exchange failed ({exc}); "
            + (
                f"the finished chunks are in {str(store.dir)!r}, rerun with resume=True"
                if store is not None
                else "rerun (with out= to keep finished chunks)"
            )
        ) from exc
    for res, _, _ in gathered:
        results.update(res)
    for cid in done:
        assert store is not None
        _, y, vals = store.read(cid)
        results[cid] = (y, vals)
    all_failures = sorted((f for _, fs, _ in gathered for f in fs), key=lambda f: f.sentences)
    cert = _assemble(data, labels, kind, chunks, results, all_failures)
    cert.meta.update(
        settings,
        positions=pos,
        batch_size=batch_size,
        options=opts,
        world_size=group.world,
        device=dev.type,
        chunks=len(chunks),
        resumed_chunks=len(done),
        ranks=[st for _, _, st in gathered],
        seconds=time.perf_counter() - start,
        out=None if out is None else str(out),
    )
    if out is not None and group.rank == 0:
        cert.save(out)
    return cert


def _bar(total: int, show: bool, group: _Group) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    desc = "certify" + (f" (rank 0 of {group.world})" if group.world > 1 else "")
    return tqdm(total=total, desc=desc, unit="chunk")


def _assemble(data, labels, kind, chunks, results, failures) -> Certification:
    N = len(data)
    lengths = np.array([len(s) for s in data], dtype=np.int64)
    values = np.full((N, int(lengths.max())), np.nan)
    out_labels = np.array(labels if labels is not None else [-1] * N, dtype=np.int64)
    for chunk in chunks:
        if chunk.id not in results:
            continue
        y, vals = results[chunk.id]
        rows = np.array(chunk.sentences)
        values[np.ix_(rows, np.array(chunk.positions))] = vals
        out_labels[rows] = y
    return Certification(kind, values, lengths, out_labels, tuple(failures), {})
