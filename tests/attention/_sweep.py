"""Bad-input sweep over the public API of ``toolkit.attention`` and ``toolkit.models.text``.

A *case* is one call with one argument made bad (wrong type, dtype, shape or device, empty,
NaN or Inf, non-contiguous, an extreme or out-of-range value) and the outcome the API
promises: either a ``TypeError``/``ValueError`` whose message names the argument, or a
documented result, checked by a predicate.  :func:`classify` runs a case and says which of
``clear`` (the promised error), ``documented`` (the promised result), ``obscure`` (another
exception, or an error that does not name the argument), ``silent`` (a result that breaks
the promise) or ``hang`` (over the time limit) it was.

``tests/attention/test_bad_inputs.py`` draws cases with hypothesis and requires ``clear``
or ``documented``; run this file to count the outcomes of a larger, derandomized sweep:

    python -m tests.attention._sweep [examples per group]
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

import toolkit.attention as ta
from toolkit.models.text import TextModel, tiny_tokenize

from .. import _sweep as _shared
from .._sweep import INF, NAN, OUTCOMES, Case


def classify(case: Case, seconds: float = 10.0) -> tuple[str, str]:
    """The shared classifier, with this sweep's rule that a name after a dot ("q.shape") does
    not count as naming the argument."""
    return _shared.classify(case, seconds, match="word-not-after-dot")


# -- inputs ---------------------------------------------------------------------------------
B, LQ, LK, D, DV = 2, 5, 6, 8, 3


def base_qkv(seed: int, lq: int = LQ, lk: int = LK, b: int = B, d: int = D):
    """q, k, v with a positive first feature, so an Inf there gives +inf scores (hence NaN
    attention) in the rows and columns it touches, whatever the pattern keeps."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(b, lq, d, generator=g), torch.randn(b, lk, d, generator=g)
    v = torch.randn(b, lk, DV, generator=g)
    if d:
        q[..., 0], k[..., 0] = q[..., 0].abs() + 0.1, k[..., 0].abs() + 0.1
    return q, k, v


def _finite(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, tuple):
        return all(_finite(t) for t in x)
    if isinstance(x, dict):
        return all(
            _finite(torch.as_tensor(np.asarray(v, dtype=float)))
            for k, v in x.items()
            if k not in ("layer", "method", "pattern")
        )
    return math.isfinite(x)


def _out(x: Any) -> torch.Tensor:
    return x[0] if isinstance(x, tuple) else x


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, tuple):
        return all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return all(
            _close(
                torch.as_tensor(np.asarray(a[k], dtype=float)),
                torch.as_tensor(np.asarray(b[k], dtype=float)),
            )
            for k in a
            if k not in ("method", "pattern")
        )
    if a.dtype == torch.bool:
        return torch.equal(a, b)
    return a.shape == b.shape and torch.allclose(
        a.double(), b.double(), rtol=1e-4, atol=1e-5, equal_nan=True
    )


# Functions of (q, k, v) and of (q, k): name -> (call, kind).  kind: "out" attention output,
# "mask" a kept set, "dsa" DSA's (must refuse NaN/Inf in q and k), "scores", "metrics".
PATTERNS = {
    "Dense": ta.Dense(),
    "NM": ta.NM(2, 4),
    "TopK": ta.TopK(0.5),
    "DSA": ta.DSA(0.5, rank=4),
    "Local": ta.Local(0.5),
    "Strided": ta.Strided(0.5),
}
QKV: dict[str, tuple[Callable[..., Any], str]] = {
    "masked_attention": (lambda q, k, v: ta.masked_attention(q, k, v), "out"),
    "nm_attention": (lambda q, k, v: ta.nm_attention(q, k, v, 2, 4), "out"),
    "dsa_attention": (lambda q, k, v: ta.dsa_attention(q, k, v, 0.5, rank=4), "dsa-out"),
    "pattern_attention": (lambda q, k, v: ta.pattern_attention("1:2")(q, k, v), "out"),
    "attention_metrics": (
        lambda q, k, v: ta.attention_metrics(q, k, v, torch.tensor(True)),
        "metrics",
    ),
    "tradeoff_curves": (
        lambda q, k, v: ta.tradeoff_curves((q, k, v), patterns=("2:4", "topk@0.5")),
        "metrics",
    ),
    **{
        f"{n}.attention": (
            (lambda q, k, v, p=p: p.attention(q, k, v)),
            "dsa-out" if n == "DSA" else "out",
        )
        for n, p in PATTERNS.items()
    },
}
QK: dict[str, tuple[Callable[..., Any], str]] = {
    "dsa_mask": (lambda q, k: ta.dsa_mask(q, k, 0.5, rank=4), "dsa-mask"),
    "dsa_scores": (lambda q, k: ta.dsa_scores(q, k, rank=4), "dsa-scores"),
    "method_mask": (lambda q, k: ta.method_mask("topk", q, k, 0.5), "mask"),
    "attention_scores": (lambda q, k: ta.attention_scores(q, k, 0.5), "scores"),
    **{
        f"{n}.mask": (
            (lambda q, k, p=p: p.mask(q, k)),
            "dsa-mask" if n == "DSA" else "mask",
        )
        for n, p in PATTERNS.items()
    },
}
TENSOR_KINDS = (
    "type",
    "dtype",
    "mixdtype",
    "ndim",
    "shape",
    "device",
    "empty",
    "nan",
    "inf",
    "noncontig",
    "half",
    "extreme",
)


def _mask_ok(keep: Any, shape: tuple[int, ...]) -> bool:
    return isinstance(keep, torch.Tensor) and keep.dtype == torch.bool and keep.shape == shape


@st.composite
def qkv_cases(draw: Any) -> Case:
    """A (q, k[, v]) function with one tensor argument made bad."""
    table = draw(st.sampled_from(("qkv", "qk")))
    funcs = QKV if table == "qkv" else QK
    label = draw(st.sampled_from(sorted(funcs)))
    fn, kind = funcs[label]
    roles = ("q", "k", "v") if table == "qkv" else ("q", "k")
    role = draw(st.sampled_from(roles))
    how = draw(st.sampled_from(TENSOR_KINDS))
    seed = draw(st.integers(0, 2**16))
    q, k, v = base_qkv(seed)
    args = {"q": q, "k": k, "v": v}
    t = args[role]
    names: tuple[str, ...] = roles
    expect: Callable[[Any], bool] | None = None
    call_args = lambda: [args[r] for r in roles]  # noqa: E731
    if how == "type":
        args[role] = draw(st.sampled_from((t.tolist(), t.numpy(), 1.0, "q", None)))
        names = (role,)
    elif how == "dtype":
        dt = draw(
            st.sampled_from((torch.int64, torch.int32, torch.bool, torch.complex64, torch.uint8))
        )
        args[role] = t.to(dt)
    elif how == "mixdtype":
        args[role] = t.to(torch.float64)
    elif how == "ndim":
        args[role] = draw(st.sampled_from((t.flatten()[0], t[0, 0])))
    elif how == "shape":
        if role == "v":
            args[role] = torch.randn(B, LK + 1, DV)
        elif draw(st.booleans()):
            args[role] = torch.randn(*t.shape[:-1], D + 1)
        else:
            args[role] = torch.randn(3, *t.shape[1:])  # batch 3 against 2: no broadcast
    elif how == "device":
        args[role] = t.to("meta")
    elif how == "empty":
        which = draw(st.sampled_from(("b", "lq", "lk", "d")))
        sizes = {"b": B, "lq": LQ, "lk": LK, "d": D, which: 0}
        args["q"], args["k"], args["v"] = base_qkv(
            seed, sizes["lq"], sizes["lk"], sizes["b"], sizes["d"]
        )
        names = roles
        expect = _empty_expect(kind, label, sizes)
    elif how in ("nan", "inf"):
        bad = t.clone()
        bad[..., 0, 0] = NAN if how == "nan" else INF
        args[role] = bad
        if kind.startswith("dsa") and role in ("q", "k"):
            names = (role,)  # DSA refuses non-finite queries and keys
        elif kind == "mask" or kind == "dsa-mask":
            shape = (B, LQ, LK)
            expect = lambda r: _mask_ok(r, shape) and _row_counts_ok(label, r)  # noqa: E731
        else:
            expect = lambda r: not _finite(r)  # noqa: E731 - documented: NaN propagates
    elif how in ("noncontig", "half", "extreme"):
        ref = None
        if how == "noncontig":
            for r in roles:
                args[r] = args[r].transpose(-1, -2).contiguous().transpose(-1, -2)
            ref = fn(*[t.contiguous() for t in call_args()])
            expect = lambda r: _close(r, ref)  # noqa: E731 - layout never changes a result
        elif how == "half":
            dt = draw(st.sampled_from((torch.float16, torch.bfloat16, torch.float64)))
            for r in roles:
                args[r] = args[r].to(dt)
            expect = lambda r: _finite(r) and _dtype_ok(kind, r, dt)  # noqa: E731
        else:  # extreme sizes: one long key axis, or a single query and key
            lq, lk = draw(st.sampled_from(((1, 1), (1, 2048), (64, 1))))
            args["q"], args["k"], args["v"] = base_qkv(seed, lq, lk, 1)
            expect = lambda r: _finite(r) and _shape_ok(kind, r, (1, lq, lk))  # noqa: E731
    return Case(f"{label}[{role}:{how}]", lambda: fn(*call_args()), names, expect)


def _dtype_ok(kind: str, r: Any, dt: torch.dtype) -> bool:
    if kind in ("out", "dsa-out"):
        return _out(r).dtype == dt
    if kind in ("mask", "dsa-mask"):
        return r.dtype == torch.bool
    return True


def _shape_ok(kind: str, r: Any, shape: tuple[int, int, int]) -> bool:
    if kind in ("out", "dsa-out"):
        return _out(r).shape == (*shape[:2], DV)
    if kind in ("mask", "dsa-mask", "scores", "dsa-scores"):
        return r.shape == shape
    return True


def _row_counts_ok(label: str, keep: torch.Tensor) -> bool:
    """The documented number of kept keys per row (NaN ranks first but is still one entry)."""
    counts = keep.sum(-1)
    expected = {
        "NM.mask": 4,
        "TopK.mask": 3,
        "method_mask": 3,
        "Local.mask": 3,
        "Strided.mask": 3,
        "Dense.mask": LK,
        "DSA.mask": 3,
        "dsa_mask": 3,
    }[label]
    return bool((counts == expected).all())


def _empty_expect(kind: str, label: str, sizes: dict[str, int]) -> Callable[[Any], bool] | None:
    """The documented result of an empty size (None: only a clear error will do)."""
    b, lq, lk, d = sizes["b"], sizes["lq"], sizes["lk"], sizes["d"]
    if kind in ("out", "dsa-out"):
        # An empty row (no keys) has a zero output; with d = 0 every score is 0 (uniform).
        return lambda r: (
            _out(r).shape == (b, lq, DV) and _finite(r) and (d == 0 or not _out(r).any())
        )
    if kind in ("mask", "dsa-mask", "scores", "dsa-scores"):
        return lambda r: r.shape == (b, lq, lk) and _finite(r)
    if d == 0:
        return _finite
    if label == "attention_metrics" and b == 0:
        return lambda r: all(x.shape == (0,) for x in r.values())
    return None  # metrics of no queries or no keys are undefined


# -- metric functions of two tensors ---------------------------------------------------------
METRIC2: dict[str, tuple[Callable[..., Any], tuple[str, str], bool, int]] = {
    # name: (call, argument names, is the second (or first) a bool keep, min ndim)
    "retained_mass": (lambda a, b: ta.retained_mass(a, b), ("probs", "keep"), True, 1),
    "kl_divergence": (lambda a, b: ta.kl_divergence(a, b), ("p", "q"), False, 1),
    "output_error": (lambda a, b: ta.output_error(a, b), ("out", "ref"), False, 2),
    "topk_recall": (lambda a, b: ta.topk_recall(b, a), ("scores", "keep"), True, 1),
}


@st.composite
def metric_cases(draw: Any) -> Case:
    label = draw(st.sampled_from(sorted(METRIC2)))
    fn, (an, bn), keep_b, _ = METRIC2[label]
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    a = torch.softmax(torch.randn(3, 4, 6, generator=g), -1)
    b = (
        torch.rand(3, 4, 6, generator=g) > 0.5
        if keep_b
        else torch.softmax(torch.randn(3, 4, 6, generator=g), -1)
    )
    role = draw(st.sampled_from((an, bn)))
    how = draw(
        st.sampled_from(("type", "dtype", "ndim", "shape", "device", "empty", "nan", "noncontig"))
    )
    args = {an: a, bn: b}
    t = args[role]
    names: tuple[str, ...] = (role,)
    expect: Callable[[Any], bool] | None = None
    if how == "type":
        args[role] = draw(st.sampled_from((t.tolist(), t.numpy(), 0.5, None)))
    elif how == "dtype":
        wrong = (
            (torch.float32, torch.int64)
            if t.dtype == torch.bool
            else (torch.int64, torch.bool, torch.complex64)
        )
        args[role] = t.to(draw(st.sampled_from(wrong)))
    elif how == "ndim":
        args[role] = t.flatten()[0] if label != "output_error" else t[0, 0]
    elif how == "shape":
        args[role] = t[..., :5]
        names = (an, bn)
    elif how == "device":
        args[role] = t.to("meta")
        names = (an, bn)
    elif how == "empty":
        args = {an: a[:0], bn: b[:0]}
        lead = (0, 4) if label != "output_error" else (0,)
        expect = lambda r: r.shape == lead  # noqa: E731 - empty in, empty out
    elif how == "nan":
        if t.dtype == torch.bool:
            return draw(metric_cases())
        bad = t.clone().double()
        bad[1, 2, 3] = NAN
        args[role] = bad.to(t.dtype)
        other = bn if role == an else an
        args[other] = args[other].double() if args[other].is_floating_point() else args[other]
        args[role] = args[role].double()

        def expect(r: torch.Tensor) -> bool:  # the row (or head) holding NaN is NaN
            cell = r[1] if label == "output_error" else r[1, 2]
            rest = r.clone()
            if label == "output_error":
                rest[1] = 0
            else:
                rest[1, 2] = 0
            return bool(torch.isnan(cell)) and bool(torch.isfinite(rest).all())
    else:  # noncontig
        ref = fn(a, b)
        args = {
            an: a.transpose(-1, -2).contiguous().transpose(-1, -2),
            bn: b.transpose(-1, -2).contiguous().transpose(-1, -2),
        }
        expect = lambda r: _close(r, ref)  # noqa: E731
    return Case(f"{label}[{role}:{how}]", lambda: fn(args[an], args[bn]), names, expect)


# -- scalar arguments ------------------------------------------------------------------------
def _ints(minimum: int, maximum: int | None = None, huge: bool = True) -> list[Any]:
    """Bad values of an int argument in ``[minimum, maximum]``; ``huge`` adds 2**70 (to an
    unbounded size that it would take more memory than any machine has to honour)."""
    bad: list[Any] = [True, 2.5, "3", minimum - 1, -(2**70), complex(1, 0)]
    if maximum is not None:
        bad.append(maximum + 1)
    elif huge:
        bad.append(2**70)
    return bad


FRACTION_BAD = [NAN, INF, -INF, -0.5, 0.0, 1.5, "0.5", True, complex(0.5, 0), None]
SCALE_BAD = [NAN, INF, -1.0, 0.0, "1", True, complex(1, 0)]
SEED_BAD = [2**64, -1, 1.5, "0", True]
_q, _k, _v = base_qkv(0)
_scores = torch.randn(4, 8)


def _scalar_table() -> list[tuple[str, str, list[Any], Callable[[Any], Any]]]:
    """(function, argument, bad values, call with that argument set)."""
    t: list[tuple[str, str, list[Any], Callable[[Any], Any]]] = [
        ("keep_count", "density", FRACTION_BAD, lambda x: ta.keep_count(x, 8)),
        ("keep_count", "length", [*_ints(1, huge=False), None], lambda x: ta.keep_count(0.5, x)),
        ("local_mask", "lq", _ints(1), lambda x: ta.local_mask(x, 4, 0.5)),
        ("local_mask", "lk", _ints(1), lambda x: ta.local_mask(4, x, 0.5)),
        ("local_mask", "window", _ints(1, 4), lambda x: ta.local_mask(4, 4, window=x)),
        ("strided_mask", "stride", _ints(1, 4), lambda x: ta.strided_mask(4, 4, stride=x)),
        ("strided_mask", "density", FRACTION_BAD[:-1], lambda x: ta.strided_mask(4, 4, x)),
        ("topk_mask", "k", _ints(1, 8), lambda x: ta.topk_mask(_scores, k=x)),
        ("topk_mask", "density", FRACTION_BAD[:-1], lambda x: ta.topk_mask(_scores, x)),
        (
            "topk_mask",
            "scores",
            [[1.0, 2.0], torch.ones(3, dtype=torch.int64), torch.tensor(1.0), torch.ones(2, 0)],
            lambda x: ta.topk_mask(x, k=1),
        ),
        ("nm_mask", "n", _ints(1, 4), lambda x: ta.nm_mask(_scores, x, 4)),
        ("nm_mask", "m", _ints(1, 32), lambda x: ta.nm_mask(_scores, 1, x)),
        (
            "nm_mask",
            "scores",
            [[1.0], torch.ones(3, dtype=torch.bool), torch.tensor(1.0)],
            lambda x: ta.nm_mask(x, 1, 2),
        ),
        ("dsa_projection", "d", _ints(1), lambda x: ta.dsa_projection(x, 4)),
        ("dsa_projection", "rank", _ints(1), lambda x: ta.dsa_projection(4, x)),
        ("dsa_projection", "seed", SEED_BAD, lambda x: ta.dsa_projection(4, 4, seed=x)),
        (
            "dsa_projection",
            "generator",
            ["g", 3.0, 0],
            lambda x: ta.dsa_projection(
                4, 4, seed=0 if x == 0 else None, generator=torch.Generator() if x == 0 else x
            ),
        ),
        ("quantize_rows", "bits", _ints(1, 16), lambda x: ta.quantize_rows(_scores, x)),
        (
            "quantize_rows",
            "x",
            [
                [1.0],
                torch.ones(3, dtype=torch.int64),
                torch.tensor(1.0),
                torch.tensor([[NAN, 1.0]]),
                torch.tensor([[INF, 1.0]]),
            ],
            lambda x: ta.quantize_rows(x, 4),
        ),
        ("counting_task", "count", _ints(1), lambda x: ta.counting_task(x, 8)),
        ("counting_task", "length", _ints(5), lambda x: ta.counting_task(2, x)),
        ("counting_task", "seed", SEED_BAD, lambda x: ta.counting_task(2, 8, x)),
        (
            "parse_pattern",
            "pattern",
            [
                "",
                "2:",
                "5:4",
                "0:4",
                "topk@",
                "topk@2",
                "topk@nan",
                "dsa@0.5 r=0",
                "dsa@0.5 b=17",
                "local@0.5 r=2",
                "bogus",
                3,
                None,
                2.5,
            ],
            lambda x: ta.parse_pattern(x),
        ),
        ("NM", "n", _ints(1, 4), lambda x: ta.NM(x, 4)),
        ("NM", "m", _ints(1, 32), lambda x: ta.NM(1, x)),
        ("TopK", "density", FRACTION_BAD, lambda x: ta.TopK(x)),
        ("Local", "density", FRACTION_BAD, lambda x: ta.Local(x)),
        ("Strided", "density", FRACTION_BAD, lambda x: ta.Strided(x)),
        ("DSA", "density", FRACTION_BAD, lambda x: ta.DSA(x)),
        ("DSA", "rank", _ints(1), lambda x: ta.DSA(0.5, rank=x)),
        ("DSA", "bits", _ints(1, 16), lambda x: ta.DSA(0.5, bits=x)),
        ("DSA", "seed", SEED_BAD, lambda x: ta.DSA(0.5, seed=x)),
        ("dsa_mask", "sparsity", [*FRACTION_BAD, 1.0], lambda x: ta.dsa_mask(_q, _k, x)),
        ("dsa_mask", "rank", _ints(1), lambda x: ta.dsa_mask(_q, _k, rank=x)),
        ("dsa_mask", "bits", _ints(1, 16), lambda x: ta.dsa_mask(_q, _k, bits=x)),
        ("dsa_mask", "seed", SEED_BAD, lambda x: ta.dsa_mask(_q, _k, seed=x)),
        ("dsa_scores", "rank", _ints(1), lambda x: ta.dsa_scores(_q, _k, rank=x)),
        (
            "dsa_attention",
            "return_probs",
            [1, "yes", None],
            lambda x: ta.dsa_attention(_q, _k, _v, return_probs=x),
        ),
        ("dsa_attention", "scale", SCALE_BAD, lambda x: ta.dsa_attention(_q, _k, _v, scale=x)),
        (
            "masked_attention",
            "scale",
            SCALE_BAD,
            lambda x: ta.masked_attention(_q, _k, _v, scale=x),
        ),
        (
            "masked_attention",
            "keep",
            [torch.ones(LQ, LK), torch.ones(3, 3, dtype=torch.bool), [[True]], 1],
            lambda x: ta.masked_attention(_q, _k, _v, keep=x),
        ),
        (
            "masked_attention",
            "attn_mask",
            [torch.ones(LQ, LK, dtype=torch.int64), torch.ones(LQ, LK + 1), [[0.0]], 0.0],
            lambda x: ta.masked_attention(_q, _k, _v, attn_mask=x),
        ),
        (
            "masked_attention",
            "return_probs",
            [1, "yes", None],
            lambda x: ta.masked_attention(_q, _k, _v, return_probs=x),
        ),
        ("nm_attention", "n", _ints(1, 4), lambda x: ta.nm_attention(_q, _k, _v, x, 4)),
        ("nm_attention", "m", _ints(1, 32), lambda x: ta.nm_attention(_q, _k, _v, 1, x)),
        ("nm_attention", "scale", SCALE_BAD, lambda x: ta.nm_attention(_q, _k, _v, scale=x)),
        ("attention_scores", "scale", [*SCALE_BAD, None], lambda x: ta.attention_scores(_q, _k, x)),
        (
            "method_mask",
            "method",
            ["bogus", 3, None, "2:4x", "topk@0.5"],
            lambda x: ta.method_mask(x, _q, _k, 0.5),
        ),
        ("method_mask", "density", FRACTION_BAD[:-1], lambda x: ta.method_mask("topk", _q, _k, x)),
        ("NM.mask", "scale", SCALE_BAD, lambda x: ta.NM(2, 4).mask(_q, _k, scale=x)),
        (
            "TopK.mask",
            "attn_mask",
            [torch.ones(2, 2), "m", torch.ones(LQ, LK, dtype=torch.int32)],
            lambda x: ta.TopK(0.5).mask(_q, _k, attn_mask=x),
        ),
        (
            "attention_metrics",
            "keep",
            [torch.ones(LQ, LK), torch.ones(2, 2, dtype=torch.bool), None, [[True]]],
            lambda x: ta.attention_metrics(_q, _k, _v, x),
        ),
        (
            "attention_metrics",
            "query_mask",
            [
                torch.full((LQ,), 0.5),
                torch.ones(LQ + 1),
                "all",
                torch.ones(LQ, dtype=torch.complex64),
            ],
            lambda x: ta.attention_metrics(_q, _k, _v, torch.tensor(True), query_mask=x),
        ),
        (
            "sweep_patterns",
            "methods",
            ["nm", ("bogus",), 3, (None,)],
            lambda x: ta.sweep_patterns(x),
        ),
        (
            "sweep_patterns",
            "densities",
            [0.5, (0.0,), (NAN,), ("0.5",), None],
            lambda x: ta.sweep_patterns(("topk",), x),
        ),
        (
            "sweep_patterns",
            "nm",
            ["2:4", ("topk@0.5",), ("5:4",), 3],
            lambda x: ta.sweep_patterns(("nm",), nm=x),
        ),
        (
            "tradeoff_curves",
            "source",
            [None, _q, (_q, _k), [(_q,)], "qkv"],
            lambda x: ta.tradeoff_curves(x),
        ),
        (
            "tradeoff_curves",
            "patterns",
            ["2:4", ("bogus",), (3,)],
            lambda x: ta.tradeoff_curves((_q, _k, _v), patterns=x),
        ),
        ("pattern_attention", "pattern", ["", "9:4", 3, None], lambda x: ta.pattern_attention(x)),
        (
            "finetune_demo",
            "patterns",
            [(), "2:4", ("bogus",), None],
            lambda x: ta.finetune_demo(x, seeds=(0,), quick=True, progress=False),
        ),
        (
            "finetune_demo",
            "seeds",
            [(), 0, (2**64,), (-1,), ("0",), None],
            lambda x: ta.finetune_demo(("2:4",), seeds=x, quick=True, progress=False),
        ),
        (
            "finetune_demo",
            "epochs",
            _ints(0),
            lambda x: ta.finetune_demo(("2:4",), seeds=(0,), epochs=x, quick=True, progress=False),
        ),
        (
            "finetune_demo",
            "lr",
            [NAN, 0.0, 1.0, -1.0, "0.1", None],
            lambda x: ta.finetune_demo(("2:4",), seeds=(0,), lr=x, quick=True, progress=False),
        ),
        (
            "finetune_demo",
            "quick",
            [1, "yes", None],
            lambda x: ta.finetune_demo(("2:4",), seeds=(0,), quick=x, progress=False),
        ),
        ("tiny_tokenize", "text", [None, 3, b"hi", "", "  "], lambda x: tiny_tokenize(x)),
        (
            "tiny_tokenize",
            "vocab_size",
            _ints(2, huge=False),
            lambda x: tiny_tokenize("hi", vocab_size=x),
        ),
        (
            "tiny_tokenize",
            "max_len",
            _ints(1, huge=False),
            lambda x: tiny_tokenize("hi", max_len=x),
        ),
        ("TextModel", "kind", ["bogus", None, 3, "MiniLM"], lambda x: TextModel(x)),
        (
            "TextModel",
            "device",
            ["gpu", 5, "meta", "cuda:99", 1.5] + ([] if torch.cuda.is_available() else ["cuda"]),
            lambda x: TextModel("tiny", device=x),
        ),
        (
            "TextModel.trace",
            "text",
            [None, 3, "", "   ", b"text"],
            lambda x: _text_model().trace(x),
        ),
    ]
    return t


_TM: list[TextModel] = []


def _text_model() -> TextModel:
    if not _TM:
        _TM.append(TextModel("tiny", device="cpu"))
    return _TM[0]


SCALARS = _scalar_table()


@st.composite
def scalar_cases(draw: Any) -> Case:
    label, name, bad, call = draw(st.sampled_from(SCALARS))
    value = draw(st.sampled_from(bad))
    return Case(f"{label}[{name}={value!r:.30}]", lambda: call(value), (name,))


GROUPS = {"qkv": qkv_cases, "metrics": metric_cases, "scalars": scalar_cases}


def _run_group(strategy: Any, examples: int, seconds: float, bad: list[str]) -> Counter:
    from hypothesis import HealthCheck, given, settings

    tally: Counter = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy())
    def run(case: Case) -> None:
        outcome, detail = classify(case, seconds)
        tally[outcome] += 1
        if outcome not in ("clear", "documented"):
            bad.append(f"{outcome:>8} {case.label}: {detail:.160}")

    run()
    return tally


def sweep(examples: int = 400, seconds: float = 10.0) -> dict[str, Counter]:
    """Outcome counts per group of a derandomized sweep (``examples`` draws per group)."""
    bad: list[str] = []
    counts = {g: _run_group(st_, examples, seconds, bad) for g, st_ in GROUPS.items()}
    for line in sorted(set(bad)):
        print(line)
    return counts


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    total: Counter = Counter()
    for group, tally in sweep(n).items():
        total += tally
        print(group, {o: tally[o] for o in OUTCOMES})
    print("total", {o: total[o] for o in OUTCOMES})
