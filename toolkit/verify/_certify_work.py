"""The work behind :func:`~toolkit.verify.certify_dataset`: the chunk plan, the process group
and its shared work queue, one chunk's bound computations, and the exchange and assembly of
results.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._backend import resolve_device
from .._checks import check_int
from ._certify_store import Certification, PartStore, ShardFailure
from .api import _predict, certified_radius, margin_bounds
from .specs import LpBall

F64 = torch.float64

__all__ = ["Chunk", "Group", "WorkQueue", "plan", "run_certification", "shard_chunks"]


@dataclass(frozen=True)
class Chunk:
    """Sentences of one length certified together at the same positions (one bound call;
    the unit of the work queue and of the resume files)."""

    id: int
    sentences: tuple[int, ...]
    T: int
    positions: tuple[int, ...]

    @property
    def cost(self) -> int:
        """The (sentence, position) pairs: the token count when every position is asked."""
        return len(self.sentences) * len(self.positions)

    @property
    def work(self) -> int:
        """Estimated bound work: every pair's bound runs through a graph of ``T`` tokens."""
        return self.cost * self.T


def plan(lengths: Sequence[int], positions: list[int] | None, batch_size: int) -> list[Chunk]:
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
    return [Chunk(cid, tuple(idx), T, pos) for cid, (idx, T, pos) in enumerate(groups)]


def shard_chunks(costs: Sequence[int], world_size: int) -> list[list[int]]:
    """Deal work items to ``world_size`` ranks, balanced by cost, deterministically.

    Longest processing time first: items by decreasing cost (ties by index) each go to the
    rank with the least cost so far (ties to the lower rank); each rank's items are returned
    in index order.  The heaviest rank carries at most 4/3 of the optimum (Graham, 1969).
    A fixed split for when the costs are known; ``certify_dataset`` deals its chunks through
    a :class:`WorkQueue` instead, because a radius bisection's cost is not.

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


class Group:
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

    def store(self) -> Any:
        """The default group's key-value store (TCP under torchrun or ``env://``, or the file
        or hash store a script initialised the group with).  No public getter exists; this
        one has been in torch.distributed since 1.x."""
        return self.dist.distributed_c10d._get_default_store()

    def close(self) -> None:
        if self.owned:
            self.dist.destroy_process_group()


class WorkQueue:
    """Hands out the indices ``0 .. n-1`` once each over the ranks of a group.

    Each :meth:`claim` is one ``store.add(key, 1)`` on the group's key-value store, which is
    atomic on every store torch.distributed has (TCP, file, hash), so no index is handed out
    twice or skipped, whichever rank asks first; a rank that is slower simply claims fewer.
    With one process (``store=None``) it is a plain counter.  ``key`` must be new for every
    queue: the default store outlives the call, and a counter is never reset.
    """

    def __init__(self, n: int, store: Any = None, key: str = "") -> None:
        self.n, self.store, self.key = n, store, key
        self._claimed = self._finished = 0

    def _add(self, name: str, amount: int) -> int:
        if self.store is None:
            if name == "claimed":
                self._claimed += amount
                return self._claimed
            self._finished += amount
            return self._finished
        return int(self.store.add(f"{self.key}/{name}", amount))

    def claim(self) -> int | None:
        """The next index, or None when all are handed out."""
        k = self._add("claimed", 1) - 1
        return k if k < self.n else None

    def finish(self) -> int:
        """Count one claimed index as done; returns how many are done over all ranks."""
        return min(self._add("finished", 1), self.n)

    def release(self) -> None:
        """Drop the counters from the store (once every rank has stopped claiming)."""
        if self.store is not None:
            for name in ("claimed", "finished"):
                try:
                    self.store.delete_key(f"{self.key}/{name}")
                except Exception:  # a store without deletion keeps two small keys; harmless
                    pass


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


def _lost(group: Group, store: PartStore | None, what: str, exc: BaseException) -> RuntimeError:
    return RuntimeError(
        f"rank {group.rank} of {group.world}: {what} failed ({exc}); "
        + (
            f"the finished chunks are in {str(store.dir)!r}, rerun with resume=True"
            if store is not None
            else "rerun (with out= to keep finished chunks)"
        )
    )


def run_certification(model, data, labels, run, chunks, group, out, resume, progress):
    kind, settings, pos, batch_size, opts = run
    store = None if out is None else PartStore(out)
    answer: Any = []
    if store is not None and group.rank == 0:
        fp = _fingerprint(model, data, labels, kind, settings, pos, batch_size, opts)
        try:
            answer = sorted(store.prepare(fp, resume))
        except (OSError, ValueError) as exc:
            answer = f"{type(exc).__name__}: {exc}"
    # Rank 0's answer (the finished chunks, or its error, and the work queue's key) reaches
    # every rank; this also keeps the others off the parts directory until it is ready, and
    # starts the ranks' clocks together (the seconds in the result exclude waiting for a
    # late peer to join).
    answer, qkey = group.broadcast((answer, f"toolkit.certify/{uuid.uuid4().hex}"))
    start = time.perf_counter()
    if isinstance(answer, str):
        raise (ValueError if answer.startswith("ValueError") else OSError)(answer)
    done: set[int] = set(answer)
    # Largest estimated work first, claimed one chunk at a time: the greedy list schedule
    # that LPT is, but fed by the actual finishing times, so a rank whose chunks take longer
    # than estimated (a bisection's cost varies by sentence) just claims fewer.
    order = sorted((c for c in chunks if c.id not in done), key=lambda c: (-c.work, c.id))
    queue = WorkQueue(len(order), group.store() if group.world > 1 else None, qkey)
    dev = group.device
    work = copy.deepcopy(model).to(device=dev, dtype=F64).eval()
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    failures: list[ShardFailure] = []
    mine: list[Chunk] = []
    times: list[float] = []
    bar = _bar(len(order), progress and group.rank == 0, group)
    t0 = time.perf_counter()
    try:
        while True:
            try:
                k = queue.claim()
            except Exception as exc:  # the store is gone (its host rank died)
                raise _lost(group, store, "the work queue", exc) from exc
            if k is None:
                break
            chunk = order[k]
            mine.append(chunk)
            tc = time.perf_counter()
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
            times.append(time.perf_counter() - tc)
            try:
                finished = queue.finish()
            except Exception as exc:
                raise _lost(group, store, "the work queue", exc) from exc
            if bar is not None:
                bar.update(finished - bar.n)
    finally:
        if bar is not None:
            bar.close()
    stats: dict[str, Any] = dict(chunks=len(mine), pairs=sum(c.cost for c in mine))
    stats.update(seconds=time.perf_counter() - t0, busy=sum(times))
    stats.update(chunk_ids=[c.id for c in mine], chunk_seconds=times)
    try:
        gathered = group.gather((results, failures, stats))
    except Exception as exc:  # a peer died or timed out: say so instead of hanging
        raise _lost(group, store, "the result exchange", exc) from exc
    if group.rank == 0:  # every rank has stopped claiming once the exchange is through
        queue.release()
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


def _bar(total: int, show: bool, group: Group) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    desc = "certify" + (f" ({group.world} processes)" if group.world > 1 else "")
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
