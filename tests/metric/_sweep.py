"""Bad-input cases for every public function and class of ``toolkit.metric`` (issue 10).

See ``tests/_sweep.py`` for the outcomes; ``python -m tests.metric._sweep`` prints the
counts, ``test_bad_inputs.py`` requires every case to be ``clear`` or ``documented``.
The file is one long table (a row per argument of every public function), hence its
length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

import toolkit.metric as tm

from .._sweep import (
    CHOICE,
    FLAG,
    GENERATOR,
    NONNEG,
    NOT_A_TENSOR,
    POSITIVE,
    SEED,
    Doc,
    Named,
    Row,
    cases,
    finite,
    has_nan,
    ints,
    main,
    noncontiguous,
    tensor_bad,
)

_G = torch.Generator().manual_seed(0)
_A, _P, _N = (torch.randn(4, 3, generator=_G) for _ in range(3))
_NK = torch.randn(4, 2, 3, generator=_G)
_E = torch.randn(8, 3, generator=_G)
_L = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
_X = torch.rand(8, 64, generator=_G)
_FLOATS = (torch.float16, torch.float32, torch.float64)


def _model() -> tm.HDML:
    return tm.HDML(tm.EmbeddingNet(embed_dim=4), num_classes=4, config=tm.DIGITS_CONFIG)


def _same(ref: Any):
    def ok(r: Any) -> bool:
        if isinstance(r, tuple):
            return all(torch.equal(a, b) for a, b in zip(r, ref))
        if isinstance(r, torch.Tensor):
            return torch.allclose(r, ref, atol=1e-6)
        return r == ref

    return ok


_TUPLE_BAD = dict(dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))


def _tuple_rows(label: str, fn) -> list[Row]:
    """anchor, positive, negative of a tuple function made bad in turn."""
    ref = fn(_A, _P, _N)
    rows: list[Row] = []
    for name, base, call in (
        ("anchor", _A, lambda v: fn(v, _P, _N)),
        ("positive", _P, lambda v: fn(_A, v, _N)),
        ("negative", _N, lambda v: fn(_A, _P, v)),
    ):
        skip: tuple[str, ...] = ("ndim:+1",) if name == "negative" else ()
        if name == "negative" and label == "npair_loss":
            skip += ("type:NoneType",)  # documented: the other classes' positives
        bad = tensor_bad(base, **_TUPLE_BAD, skip=skip)
        bad += [
            Named(base.double(), "float64 among float32"),
            Named(base[:, :2], "D=2"),
            Named(base[:3], "N=3"),
        ]
        rows.append((label, name, bad, call, ("anchor", "positive", "negative")))
    empty = (_A[:0], _P[:0], _N[:0])
    if label == "hardness_aware_negative":  # documented: elementwise, empty in -> empty out
        no_tuples: Any = Doc(empty, lambda r: r.shape == (0, 3), "all empty")
    else:  # a mean over no tuples would be NaN
        no_tuples = Named(empty, "all empty")
    rows.append((label, "anchor", [no_tuples], lambda v: fn(*v)))
    both = (noncontiguous(_A), noncontiguous(_P), noncontiguous(_N))
    rows.append((label, "layout", [Doc(both, _same(ref), "noncontig")], lambda v: fn(*v)))
    return rows


ROWS: list[Row] = [
    # -- synthesis -----------------------------------------------------------------------------
    (
        "hardness",
        "j_avg",
        [
            *POSITIVE,
            Named(torch.tensor([1.0, 2.0]), "2 entries"),
            Named(torch.tensor(math.nan), "nan tensor"),
        ],
        lambda v: tm.hardness(v),
    ),
    ("hardness", "alpha", POSITIVE, lambda v: tm.hardness(1.0, v)),
    *_tuple_rows(
        "hardness_aware_negative", lambda a, p, n: tm.hardness_aware_negative(a, p, n, 1.0)
    ),
    (
        "hardness_aware_negative",
        "j_avg",
        POSITIVE,
        lambda v: tm.hardness_aware_negative(_A, _P, _N, v),
    ),
    (
        "hardness_aware_negative",
        "alpha",
        POSITIVE,
        lambda v: tm.hardness_aware_negative(_A, _P, _N, 1.0, v),
    ),
    # -- losses --------------------------------------------------------------------------------
    *_tuple_rows("triplet_loss", tm.triplet_loss),
    ("triplet_loss", "margin", NONNEG, lambda v: tm.triplet_loss(_A, _P, _N, v)),
    *_tuple_rows("npair_loss", tm.npair_loss),
    ("npair_loss", "l2_reg", NONNEG, lambda v: tm.npair_loss(_A, _P, _NK, v)),
    (
        "npair_negatives",
        "positive",
        [
            *tensor_bad(
                _P,
                **_TUPLE_BAD,
                skip=("ndim:+1",),
                docs={
                    "nan": has_nan,
                    "inf": lambda r: not finite(r),
                    "device:meta": lambda r: r.is_meta and r.shape == (4, 3, 3),
                },
            ),
            Named(_P[:1], "N=1"),
        ],
        lambda v: tm.npair_negatives(v),
    ),
    ("from_pml", "loss", [None, "TripletMarginLoss", 3], lambda v: tm.from_pml(v)),
    # -- evaluation ----------------------------------------------------------------------------
    (
        "retrieval_topk",
        "queries",
        [
            *tensor_bad(_E, skip=("ndim:+1",)),
            Doc(noncontiguous(_E), _same(tm.retrieval_topk(_E, 2)), "noncontig"),
            Named(_E[:1], "N=1"),
        ],
        lambda v: tm.retrieval_topk(v, 2),
    ),
    ("retrieval_topk", "k", ints(1, 7), lambda v: tm.retrieval_topk(_E, v)),
    (
        "retrieval_topk",
        "references",
        [
            *tensor_bad(_E, skip=("ndim:+1", "type:NoneType")),
            Named(_E[:, :2], "D=2"),
            Named(_E.double(), "float64"),
        ],
        lambda v: tm.retrieval_topk(_E, 2, v),
    ),
    ("retrieval_topk", "backend", ["gpu", 3, ""], lambda v: tm.retrieval_topk(_E, 2, backend=v)),
    (
        "recall_at_k",
        "embeddings",
        [*tensor_bad(_E, skip=("ndim:+1",)), Named(_E[:1], "N=1")],
        lambda v: tm.recall_at_k(v, _L, ks=(1,)),
        ("labels",),
    ),
    (
        "recall_at_k",
        "labels",
        [
            None,
            "a",
            ["a"] * 8,
            Named(_L.float(), "float"),
            Named(_L.bool(), "bool"),
            Named(_L[:5], "len 5"),
            Named(_L.unsqueeze(1), "2-d"),
            [0.5] * 8,
        ],
        lambda v: tm.recall_at_k(_E, v, ks=(1,)),
    ),
    (
        "recall_at_k",
        "ks",
        [None, 1, (), (0,), (8,), ("1",), (True,), (1.5,), [None]],
        lambda v: tm.recall_at_k(_E, _L, ks=v),
    ),
    ("map_at_r", "embeddings", tensor_bad(_E, skip=("ndim:+1",)), lambda v: tm.map_at_r(v, _L)),
    (
        "map_at_r",
        "labels",
        [
            None,
            Named(_L.float(), "float"),
            Named(torch.arange(8), "distinct"),
            Named(_L[:5], "len 5"),
        ],
        lambda v: tm.map_at_r(_E, v),
    ),
    ("nmi", "embeddings", tensor_bad(_E, skip=("ndim:+1",)), lambda v: tm.nmi(v, _L)),
    (
        "nmi",
        "labels",
        [
            None,
            Named(_L.float(), "float"),
            Named(torch.zeros(8, dtype=torch.long), "one class"),
            Named(_L[:5], "len 5"),
        ],
        lambda v: tm.nmi(_E, v),
    ),
    ("nmi", "seed", SEED, lambda v: tm.nmi(_E, _L, seed=v)),
    ("nmi", "n_init", ints(1), lambda v: tm.nmi(_E, _L, n_init=v)),
    # -- the model -----------------------------------------------------------------------------
    ("HDMLConfig", "alpha", POSITIVE, lambda v: tm.HDMLConfig(alpha=v)),
    ("HDMLConfig", "beta", POSITIVE, lambda v: tm.HDMLConfig(beta=v)),
    ("HDMLConfig", "lam", NONNEG, lambda v: tm.HDMLConfig(lam=v)),
    ("HDMLConfig", "window", ints(1, huge=False), lambda v: tm.HDMLConfig(window=v)),
    ("HDMLConfig", "lr", POSITIVE, lambda v: tm.HDMLConfig(lr=v)),
    ("HDMLConfig", "margin", NONNEG, lambda v: tm.HDMLConfig(margin=v)),
    ("RunningMean", "window", ints(1, huge=False), lambda v: tm.RunningMean(v)),
    (
        "RunningMean.push",
        "value",
        [None, "a", math.nan, math.inf, [1.0], True],
        lambda v: tm.RunningMean(3).push(v),
    ),
    ("EmbeddingNet", "in_dim", ints(1), lambda v: tm.EmbeddingNet(in_dim=v)),
    ("EmbeddingNet", "embed_dim", ints(1), lambda v: tm.EmbeddingNet(embed_dim=v)),
    ("Generator", "embed_dim", ints(1), lambda v: tm.Generator(v, 4)),
    ("Generator", "hidden", ints(1), lambda v: tm.Generator(4, 4, v)),
    (
        "sample_triplets",
        "labels",
        [
            None,
            [0, 0, 1],
            Named(_L.float(), "float"),
            Named(_L.unsqueeze(0), "2-d"),
            Named(torch.zeros(4, dtype=torch.long), "one class"),
        ],
        lambda v: tm.sample_triplets(v, torch.Generator().manual_seed(0)),
    ),
    ("sample_triplets", "generator", [None, *GENERATOR], lambda v: tm.sample_triplets(_L, v)),
    ("HDML", "model", [None, torch.nn.Linear(3, 3), "net"], lambda v: tm.HDML(v, 4)),
    ("HDML", "num_classes", ints(2), lambda v: tm.HDML(tm.EmbeddingNet(), v)),
    ("HDML", "loss", CHOICE, lambda v: tm.HDML(tm.EmbeddingNet(), 4, loss=v)),
    ("HDML", "config", [None, {}, "paper"], lambda v: tm.HDML(tm.EmbeddingNet(), 4, config=v)),
    ("HDML", "enabled", FLAG, lambda v: tm.HDML(tm.EmbeddingNet(), 4, enabled=v)),
    ("HDML", "miner", ["m", 3], lambda v: tm.HDML(tm.EmbeddingNet(), 4, miner=v)),
    ("HDML", "seed", SEED, lambda v: tm.HDML(tm.EmbeddingNet(), 4, seed=v)),
    (
        "HDML.step",
        "x",
        [
            *tensor_bad(_X, dtypes=_FLOATS, skip=("ndim:0", "ndim:+1", "dtype:float16")),
            Named(_X[:, :10], "10 features"),
            Named(_X[:5], "N=5"),
        ],
        lambda v: _model().step(v, _L),
        ("labels",),
    ),
    (
        "HDML.step",
        "labels",
        [
            None,
            Named(_L.float(), "float"),
            Named(_L + 4, "out of range"),
            Named(_L[:5], "len 5"),
            Named(torch.zeros(8, dtype=torch.long), "one class"),
        ],
        lambda v: _model().step(_X, v),
    ),
    (
        "HDML.embed",
        "x",
        [*NOT_A_TENSOR, Named(_X[:, :10], "10 features"), Named(_X.long(), "int")],
        lambda v: _model().embed(v),
    ),
    # -- the experiment ------------------------------------------------------------------------
    ("train_on_digits", "method", CHOICE, lambda v: tm.train_on_digits(v, steps=1)),
    ("train_on_digits", "seed", SEED, lambda v: tm.train_on_digits(seed=v, steps=1)),
    ("train_on_digits", "steps", ints(1, huge=False), lambda v: tm.train_on_digits(steps=v)),
    ("train_on_digits", "loss", CHOICE, lambda v: tm.train_on_digits(steps=1, loss=v)),
    ("train_on_digits", "config", [None, "paper"], lambda v: tm.train_on_digits(steps=1, config=v)),
    (
        "train_on_digits",
        "train_classes",
        [None, (), (0,), (0, 10), (0, 5), ("0", "1"), (0, 0, 1)],
        lambda v: tm.train_on_digits(steps=1, train_classes=v),
    ),
    (
        "train_on_digits",
        "test_classes",
        [None, (5,), (5, 11), (-1, 5)],
        lambda v: tm.train_on_digits(steps=1, test_classes=v),
    ),
    ("train_on_digits", "per_class", ints(2), lambda v: tm.train_on_digits(steps=1, per_class=v)),
    ("train_on_digits", "embed_dim", ints(1), lambda v: tm.train_on_digits(steps=1, embed_dim=v)),
    ("train_on_digits", "progress", FLAG, lambda v: tm.train_on_digits(steps=1, progress=v)),
    (
        "compare_on_digits",
        "seeds",
        [0, "0", [], [-1], [2**64], ["0"], [None], [0, 1.5]],
        lambda v: tm.compare_on_digits(v, steps=1, progress=False),
    ),
    (
        "compare_on_digits",
        "steps",
        [v for v in ints(1, huge=False) if v is not None],
        lambda v: tm.compare_on_digits([0], steps=v, progress=False),
    ),
    (
        "compare_on_digits",
        "progress",
        FLAG,
        lambda v: tm.compare_on_digits([0], steps=1, progress=v),
    ),
    (
        "compare_on_digits",
        "per_class",
        [1, "12"],
        lambda v: tm.compare_on_digits([0], steps=1, progress=False, per_class=v),
    ),
    (
        "compare_on_digits",
        "bogus",
        [1],
        lambda v: tm.compare_on_digits([0], steps=1, progress=False, bogus=v),
    ),
    # -- the explorer's model ------------------------------------------------------------------
    (
        "pca_2d",
        "embeddings",
        tensor_bad(_E, dtypes=_FLOATS, skip=("ndim:+1",)),
        lambda v: tm.pca_2d(v),
    ),
    (
        "synthesis_view",
        "embeddings",
        [
            *NOT_A_TENSOR,
            Named(_E[:2], "N=2"),
            Named(torch.full_like(_E, math.nan), "nan"),
            Named(_E.long(), "int"),
        ],
        lambda v: tm.synthesis_view(v, tm.pca_2d(_E), 0, 1, 2, 1.0, 1.0),
        ("negative",),
    ),
    (
        "synthesis_view",
        "projection",
        [None, "pca", Named(tm.pca_2d(_E[:, :2]), "D=2")],
        lambda v: tm.synthesis_view(_E, v, 0, 1, 2, 1.0, 1.0),
    ),
    (
        "synthesis_view",
        "anchor",
        ints(0, 7),
        lambda v: tm.synthesis_view(_E, tm.pca_2d(_E), v, 1, 2, 1.0, 1.0),
    ),
    (
        "synthesis_view",
        "j_avg",
        POSITIVE,
        lambda v: tm.synthesis_view(_E, tm.pca_2d(_E), 0, 1, 2, v, 1.0),
    ),
    (
        "synthesis_view",
        "alpha",
        POSITIVE,
        lambda v: tm.synthesis_view(_E, tm.pca_2d(_E), 0, 1, 2, 1.0, v),
    ),
    (
        "synthesis_view",
        "points",
        ints(2, 10**5),
        lambda v: tm.synthesis_view(_E, tm.pca_2d(_E), 0, 1, 2, 1.0, 1.0, v),
    ),
    (
        "smooth",
        "values",
        [
            None,
            "abc",
            ["a", "b"],
            np.ones((3, 2)),
            [1.0, None],
            Doc(
                np.array([math.nan, 1.0, 2.0, 3.0]),
                lambda r: np.isnan(r[0]) and np.isfinite(r[2:]).all(),
                "nan first, window 2",
            ),
        ],
        lambda v: tm.smooth(v, 2),
    ),
    ("smooth", "window", ints(1, huge=False), lambda v: tm.smooth(np.ones(4), v)),
]

CASES = cases(ROWS)

if __name__ == "__main__":
    main({"metric": CASES})
