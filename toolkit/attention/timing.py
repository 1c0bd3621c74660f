r"""How fast sparse attention runs next to dense attention, at one size (issue 14, item 6).

:func:`time_attention` times, on the same fresh random ``q``, ``k``, ``v``:

* ``SDPA`` -- :func:`torch.nn.functional.scaled_dot_product_attention`, the dense attention a
  user would pick (flash or cuDNN on a GPU);
* ``unfused`` -- dense attention as three steps, :math:`\mathrm{softmax}(QK^\top s)V` with a
  batched matrix product, a softmax and a second product, in the input dtype (the baseline
  of DFSS's paper);
* every requested pattern through its ``attention`` (:func:`~toolkit.attention.nm_attention`
  for :class:`~toolkit.attention.NM`, :func:`~toolkit.attention.dsa_attention`, prediction
  included, for :class:`~toolkit.attention.DSA`).

On CUDA each entry is warmed up, then timed with CUDA events around a stream of back-to-back
calls (as a model runs them); on the CPU each call is timed with :func:`time.perf_counter`.
The result holds the median milliseconds of each entry and its speed-up against both dense
anchors.  On the CPU the sparse entries are the torch reference paths: they compute the dense
scores and then prune, so they are *slower* than dense attention by design; the kernels that
make sparsity pay run on CUDA.
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .._backend import resolve_device
from .._checks import check_choice, check_int, make_generator
from ._fused import dsa_fused_supported, fused_supported, sparse_supported
from .dsa import _dsa_attention_op
from .patterns import DSA, NM, Pattern, PatternLike, check_sequence, parse_pattern
from .sparse import _nm_attention_op

__all__ = ["MAX_SEQ_LEN", "TIMING_DTYPES", "AttentionTiming", "time_attention"]

#: The longest sequence :func:`time_attention` takes.
MAX_SEQ_LEN = 16384
#: The dtypes :func:`time_attention` times in.
TIMING_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: The most score entries ``batch * heads * seq_len**2`` per device type: the unfused and the
#: reference paths hold them all (in float32), so this bounds the memory a timing takes
#: (256 MiB on the CPU, 8 GiB on a GPU) and the CPU's minutes.
MAX_SCORES = {"cpu": 2**26, "cuda": 2**31}
_MAX_HEADS = 256
_MAX_BATCH = 256
_MAX_HEAD_DIM = 256
_MAX_REPEATS = 1000
#: Input sets the calls rotate through, so that no call finds its inputs in cache from the
#: previous call.
_SETS = 2
#: On CUDA one timed sample is a stream of calls lasting about this long (at most _MAX_INNER).
_SAMPLE_MS = 1.0
_MAX_INNER = 50
#: The clock of the CPU timings (a module attribute so that a test can replace it).
_clock: Callable[[], float] = time.perf_counter


@dataclass(frozen=True)
class AttentionTiming:
    """The timings of :func:`time_attention`: one entry per timed method, in order.

    Attributes
    ----------
    names : tuple of str
        ``"SDPA"``, ``"unfused"``, then each pattern's ``label`` (``"2:4"``, ``"dsa@0.1"``).
    median_ms : tuple of float
        Median milliseconds per call.
    vs_sdpa : tuple of float
        Speed-up against ``SDPA``: its median time divided by the entry's (above 1 means
        faster than SDPA).
    vs_unfused : tuple of float
        Speed-up against ``unfused``, likewise.
    paths : tuple of str
        What ran: ``"torch SDPA"``, ``"torch bmm-softmax-bmm"``, ``"fused kernel"``
        (N:M, ``kernels/nm_attention.cu``), ``"fused DSA kernel"`` (DSA in fp16/bf16:
        the prediction's packed pattern, then ``kernels/dsa_attention.cu``), ``"sparse kernel"``
        (DSA in float32, ``kernels/dsa_sparse.cu``) or ``"reference"`` (the torch reference
        path).
    device : str
        The device's name (the GPU's model, or the CPU).
    dtype : torch.dtype
        The inputs' dtype.
    seq_len : int
        The sequence length; ``q``, ``k``, ``v`` are ``[batch, heads, seq_len, head_dim]``.
    batch : int
        The batch size.
    heads : int
        The number of heads.
    head_dim : int
        The head size.
    repeats : int
        The number of timed samples per entry.
    """

    names: tuple[str, ...]
    median_ms: tuple[float, ...]
    vs_sdpa: tuple[float, ...]
    vs_unfused: tuple[float, ...]
    paths: tuple[str, ...]
    device: str
    dtype: torch.dtype
    seq_len: int
    batch: int
    heads: int
    head_dim: int
    repeats: int

    def ms(self, name: str) -> float:
        """The median milliseconds of the entry ``name``.

        Parameters
        ----------
        name : str
            One of :attr:`names`.

        Returns
        -------
        float

        Raises
        ------
        ValueError
            If no entry has that name.
        """
        return self.median_ms[self.names.index(check_choice("name", name, self.names))]

    def rows(self) -> list[dict[str, Any]]:
        """The entries as table rows.

        Returns
        -------
        list of dict
            One per entry, with keys ``name``, ``median_ms``, ``vs_sdpa``, ``vs_unfused``
            and ``path``.
        """
        return [
            dict(name=n, median_ms=t, vs_sdpa=a, vs_unfused=b, path=p)
            for n, t, a, b, p in zip(
                self.names, self.median_ms, self.vs_sdpa, self.vs_unfused, self.paths
            )
        ]


def _cpu_name() -> str:
    return f"CPU ({platform.machine() or 'unknown'})"


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v)


def _unfused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    s = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(torch.softmax(s, dim=-1), v)


def _pattern_call(pattern: Pattern) -> Callable[..., torch.Tensor]:
    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = pattern.attention(q, k, v)
        assert isinstance(out, torch.Tensor)
        return out

    return run


def _pattern_path(pattern: Pattern, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """Which path ``pattern.attention(q, k, v)`` takes, by the rules the functions apply."""
    if isinstance(pattern, NM):
        if _nm_attention_op.path_for(q) == "cuda" and fused_supported(
            q, k, v, pattern.m, False, None
        ):
            return "fused kernel"
    elif isinstance(pattern, DSA) and pattern.density < 1:
        keep = torch.empty((*q.shape[:-1], k.shape[-2]), dtype=torch.bool, device="meta")
        if _dsa_attention_op.path_for(q) == "cuda":
            if dsa_fused_supported(q, k, v, None, False, None):
                return "fused DSA kernel"
            if sparse_supported(q, k, v, keep, False, None):
                return "sparse kernel"
    return "reference"


def _check_patterns(patterns: object) -> tuple[Pattern, ...]:
    seq = check_sequence("patterns", patterns)
    out = tuple(parse_pattern(p, "patterns entry") for p in seq)
    labels = [p.label for p in out]
    for label in labels:
        if labels.count(label) > 1 or label in ("SDPA", "unfused"):
            raise ValueError(f"patterns must be distinct, got {label!r} twice in {labels}")
    return out


def _cuda_samples(
    fn: Callable[..., torch.Tensor], sets: list[tuple], repeats: int, warmup: int
) -> list[float]:
    """Milliseconds per call: CUDA events around ``inner`` back-to-back calls per sample."""
    start = time.perf_counter()
    for i in range(max(warmup, 1)):
        fn(*sets[i % len(sets)])
    torch.cuda.synchronize()
    first = max((time.perf_counter() - start) * 1e3 / max(warmup, 1), 1e-3)
    inner = int(min(_MAX_INNER, max(1, _SAMPLE_MS / first)))
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(inner):
            fn(*sets[i % len(sets)])
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / inner)
    return times


def _cpu_samples(
    fn: Callable[..., torch.Tensor], sets: list[tuple], repeats: int, warmup: int
) -> list[float]:
    """Milliseconds of each of ``repeats`` single calls, after ``warmup`` untimed ones."""
    for i in range(warmup):
        fn(*sets[i % len(sets)])
    times = []
    for r in range(repeats):
        args = sets[r % len(sets)]
        t0 = _clock()
        fn(*args)
        times.append((_clock() - t0) * 1e3)
    return times


def time_attention(
    seq_len: int,
    *,
    patterns: Sequence[PatternLike] = ("2:4", "dsa@0.1"),
    heads: int = 16,
    head_dim: int = 64,
    batch: int = 1,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    repeats: int = 10,
    warmup: int = 2,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int], Any] | None = None,
) -> AttentionTiming:
    r"""Time dense attention (SDPA and unfused) and sparse patterns at one size.

    Self-attention without a mask on ``q``, ``k``, ``v`` of shape
    ``[batch, heads, seq_len, head_dim]``, drawn fresh from a standard normal (two sets,
    which consecutive calls alternate between).  See the module docstring for what each
    entry runs and how it is timed.

    Parameters
    ----------
    seq_len : int
        Sequence length :math:`L`, ``1 <= L <= 16384``, with
        ``batch * heads * L**2`` at most :math:`2^{26}` on the CPU and :math:`2^{31}` on a
        GPU (the dense paths hold that many scores).
    patterns : sequence of Pattern or str
        The sparse patterns to time (:func:`~toolkit.attention.parse_pattern`), distinct.
        Default: 2:4 (DFSS) and DSA at sparsity 0.9.
    heads, head_dim, batch : int
        The other sizes (``head_dim`` 64 or 128 for the CUDA kernels; each at most 256).
    dtype : torch.dtype, optional
        float16, bfloat16 or float32; default float16 on CUDA, float32 on the CPU.
    device : str or torch.device, optional
        Where to time (:func:`toolkit._backend.resolve_device`: default the backend in
        force, ``"auto"`` a GPU when there is one).
    repeats : int
        Timed samples per entry (``1 <= repeats <= 1000``); the median is reported.
    warmup : int
        Untimed calls per entry first (``0 <= warmup <= 1000``): kernel compilation, caches.
        On CUDA at least one is made, which also sizes the stream of calls per sample.
    seed, generator
        The inputs' randomness (:func:`toolkit._checks.make_generator`; default seed 0).
    progress : callable, optional
        ``progress(done, total)`` after each entry (it may raise to stop the timing).

    Returns
    -------
    AttentionTiming
        Names, median ms, speed-ups against SDPA and unfused, paths, device and dtype.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), including a size over the bounds above.

    Examples
    --------
    >>> t = time_attention(64, heads=2, patterns=("2:4", "dsa@0.5"), repeats=2, device="cpu")
    >>> t.names, t.paths[2:]
    (('SDPA', 'unfused', '2:4', 'dsa@0.5'), ('reference', 'reference'))
    >>> all(ms > 0 for ms in t.median_ms), t.vs_unfused[1]
    (True, 1.0)
    """
    dev = resolve_device(device)
    seq_len = check_int("seq_len", seq_len, 1, MAX_SEQ_LEN)
    heads = check_int("heads", heads, 1, _MAX_HEADS)
    head_dim = check_int("head_dim", head_dim, 1, _MAX_HEAD_DIM)
    batch = check_int("batch", batch, 1, _MAX_BATCH)
    repeats = check_int("repeats", repeats, 1, _MAX_REPEATS)
    warmup = check_int("warmup", warmup, 0, _MAX_REPEATS)
    scores = batch * heads * seq_len**2
    if scores > MAX_SCORES[dev.type]:
        raise ValueError(
            f"batch * heads * seq_len**2 must be at most {MAX_SCORES[dev.type]} on {dev.type}, "
            f"got {batch} * {heads} * {seq_len}**2 = {scores}; use a shorter seq_len or "
            "fewer heads"
        )
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    dtype = check_choice("dtype", dtype, TIMING_DTYPES)
    pats = _check_patterns(patterns)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    gen = make_generator(seed, generator, default_seed=0)

    shape = (batch, heads, seq_len, head_dim)
    sets = [
        tuple(torch.randn(shape, generator=gen, device=gen.device).to(dev, dtype) for _ in range(3))
        for _ in range(_SETS)
    ]
    q, k, v = sets[0]
    entries: list[tuple[str, Callable[..., torch.Tensor], str]] = [
        ("SDPA", _sdpa, "torch SDPA"),
        ("unfused", _unfused, "torch bmm-softmax-bmm"),
    ]
    entries += [(p.label, _pattern_call(p), _pattern_path(p, q, k, v)) for p in pats]
    sample = _cuda_samples if dev.type == "cuda" else _cpu_samples
    medians: list[float] = []
    if progress is not None:
        progress(0, len(entries))
    with (
        torch.no_grad(),
        torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext(),
    ):
        for i, (_, fn, _) in enumerate(entries):
            medians.append(float(statistics.median(sample(fn, sets, repeats, warmup))))
            if progress is not None:
                progress(i + 1, len(entries))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    return AttentionTiming(
        names=tuple(e[0] for e in entries),
        median_ms=tuple(medians),
        vs_sdpa=tuple(_ratio(medians[0], t) for t in medians),
        vs_unfused=tuple(_ratio(medians[1], t) for t in medians),
        paths=tuple(e[2] for e in entries),
        device=name,
        dtype=dtype,
        seq_len=seq_len,
        batch=batch,
        heads=heads,
        head_dim=head_dim,
        repeats=repeats,
    )


def _ratio(anchor: float, t: float) -> float:
    # A coarse clock can read 0 ms for a tiny call: no finite speed-up then.
    return anchor / t if t > 0 else math.inf
