"""Bad-input cases for every public function and class of ``toolkit.norm`` (issue 10).

See ``tests/_sweep.py`` for the outcomes; ``python -m tests.norm._sweep`` prints the counts,
``test_bad_inputs.py`` requires every case to be ``clear`` or ``documented``.
The file is one long table (a row per argument of every public function), hence its
length.
"""

from __future__ import annotations

import math
from typing import Any

import torch

import toolkit.norm as tn
from toolkit.norm import analysis

from .._sweep import (
    FLAG,
    FRACTION,
    GENERATOR,
    NOT_A_TENSOR,
    OPEN_FRACTION,
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
_X = torch.randn(8, 3, 4, 4, generator=_G)
_X2 = torch.randn(8, 3, generator=_G)
_SHAPE = (8, 4, 4)
_W4 = torch.randn(4, 3, 3, 3, generator=_G)
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _same(ref: Any):
    def ok(r: Any) -> bool:
        a = r[0] if isinstance(r, tuple) else r
        b = ref[0] if isinstance(ref, tuple) else ref
        return isinstance(a, torch.Tensor) and torch.allclose(a, b, atol=1e-6)

    return ok


def _nan_out(r: Any) -> bool:
    return has_nan(r)


def _not_finite(r: Any) -> bool:
    return not finite(r[0] if isinstance(r, tuple) else r)


def _meta_like(ref: torch.Tensor):
    return lambda r: isinstance(r, torch.Tensor) and r.is_meta and r.shape == ref.shape


_SHAPES: list[Any] = [
    None,
    "844",
    8,
    (8, 4),
    (8, 4, 4, 4),
    (0, 4, 4),
    (8, 0, 4),
    (-1, 4, 4),
    (8.0, 4, 4),
    (True, 4, 4),
    ("8", 4, 4),
    (2**70, 4, 4),
]
_ROWS_BAD = [
    Named(torch.tensor([0, 0, 1]), "repeated"),
    Named(torch.tensor([3, 1]), "unsorted"),
    Named(torch.tensor([0, 9]), "row 9 of 8"),
    Named(torch.tensor([-1, 2]), "negative"),
    Named(torch.tensor([0.0, 1.0]), "float"),
    Named(torch.tensor([[0, 1]]), "2-d"),
    Named(torch.tensor([], dtype=torch.long), "empty"),
    None,
    [0, 1],
]


def _sample(**kw: Any) -> tn.Sample:
    args = dict(
        rows=torch.tensor([0, 1]),
        starts=torch.zeros(2, 2, dtype=torch.long),
        patch=(4, 4),
        shape=_SHAPE,
    )
    args.update(kw)
    return tn.Sample(**args)


ROWS: list[Row] = [
    # -- samplers ------------------------------------------------------------------------------
    ("sample_count", "batch", ints(1), lambda v: tn.sample_count(v, 0.5)),
    ("sample_count", "ratio", [*OPEN_FRACTION], lambda v: tn.sample_count(8, v), ("sample_ratio",)),
    ("patch_size", "h", ints(1), lambda v: tn.patch_size(v, 4, 0.5)),
    ("patch_size", "w", ints(1), lambda v: tn.patch_size(4, v, 0.5)),
    ("patch_size", "ratio", OPEN_FRACTION, lambda v: tn.patch_size(4, 4, v), ("patch_ratio",)),
    ("full_sample", "shape", _SHAPES, lambda v: tn.full_sample(v)),
    ("batch_sample", "shape", _SHAPES, lambda v: tn.batch_sample(v, 0.5, _gen())),
    ("batch_sample", "sample_ratio", OPEN_FRACTION, lambda v: tn.batch_sample(_SHAPE, v, _gen())),
    ("batch_sample", "generator", [None, *GENERATOR], lambda v: tn.batch_sample(_SHAPE, 0.5, v)),
    ("feature_sample", "shape", _SHAPES, lambda v: tn.feature_sample(v, 0.5, _gen())),
    (
        "feature_sample",
        "patch_ratio",
        OPEN_FRACTION,
        lambda v: tn.feature_sample(_SHAPE, v, _gen()),
    ),
    (
        "feature_sample",
        "generator",
        [None, *GENERATOR],
        lambda v: tn.feature_sample(_SHAPE, 0.5, v),
    ),
    ("patch_sample", "shape", _SHAPES, lambda v: tn.patch_sample(v, (2, 2), _gen())),
    (
        "patch_sample",
        "patch",
        [None, 2, "22", (2,), (0, 2), (5, 2), (2, -1), (2.0, 2), (True, 1), (2, 2, 2)],
        lambda v: tn.patch_sample(_SHAPE, v, _gen()),
    ),
    ("patch_sample", "generator", [None, *GENERATOR], lambda v: tn.patch_sample(_SHAPE, (2, 2), v)),
    ("virtual_sample", "shape", _SHAPES, lambda v: tn.virtual_sample(v, 2, 0.5, _gen())),
    (
        "virtual_sample",
        "num_virtual",
        [*ints(1), 8],
        lambda v: tn.virtual_sample(_SHAPE, v, 0.5, _gen()),
    ),
    ("virtual_sample", "real_ratio", FRACTION, lambda v: tn.virtual_sample(_SHAPE, 2, v, _gen())),
    (
        "virtual_sample",
        "generator",
        [None, *GENERATOR],
        lambda v: tn.virtual_sample(_SHAPE, 2, 0.5, v),
    ),
    (
        "Sample",
        "rows",
        _ROWS_BAD,
        lambda v: tn.sampled_batch_norm(
            _X,
            _sample(
                rows=v,
                starts=(
                    torch.zeros(len(v), 2, dtype=torch.long)
                    if isinstance(v, torch.Tensor) and v.dim() == 1
                    else torch.zeros(2, 2, dtype=torch.long)
                ),
            ),
        ),
    ),
    (
        "Sample",
        "starts",
        [
            None,
            Named(torch.zeros(2, 3, dtype=torch.long), "[2, 3]"),
            Named(torch.zeros(3, 2, dtype=torch.long), "[3, 2]"),
            Named(torch.full((2, 2), 1), "window past the edge"),
            Named(torch.full((2, 2), -1), "negative"),
            Named(torch.zeros(2, 2), "float"),
        ],
        lambda v: tn.sampled_batch_norm(_X, _sample(starts=v)),
    ),
    (
        "Sample",
        "patch",
        [None, (0, 4), (5, 4), (4,), (4.0, 4), "44"],
        lambda v: tn.sampled_batch_norm(_X, _sample(patch=v)),
    ),
    (
        "Sample",
        "shape",
        [None, (8, 4), (8, 4, 4.0), (0, 4, 4), "844"],
        lambda v: tn.sampled_batch_norm(_X, _sample(shape=v)),
    ),
    # -- the functional --------------------------------------------------------------------------
    (
        "sampled_batch_norm",
        "x",
        [
            *tensor_bad(
                _X, dtypes=_FLOATS, docs={"nan": _nan_out, "inf": _nan_out}, skip=("ndim:+1",)
            ),
            Named(torch.randn(8, 3, 4, 4, 2), "5-d"),
            Named(torch.randn(1, 3), "N=1"),
            Doc(noncontiguous(_X), _same(tn.sampled_batch_norm(_X)), "noncontig"),
            Named(torch.randn(8, 0, 4, 4), "C=0"),
        ],
        lambda v: tn.sampled_batch_norm(v),
    ),
    (
        "sampled_batch_norm",
        "sample",
        [
            "s",
            3,
            Named(tn.full_sample((4, 4, 4)), "other shape"),
            Named(
                tn.batch_sample(_SHAPE, 0.125, _gen()).__class__(
                    torch.tensor([0]), torch.zeros(1, 2, dtype=torch.long), (1, 1), _SHAPE
                ),
                "one datum",
            ),
        ],
        lambda v: tn.sampled_batch_norm(_X, v),
    ),
    (
        "sampled_batch_norm",
        "weight",
        [
            *NOT_A_TENSOR[1:],
            Named(torch.ones(4), "4 entries"),
            Named(torch.ones(3, dtype=torch.long), "int"),
            Named(torch.ones(3, 1), "2-d"),
            Named(torch.ones(3, device="meta"), "meta"),
            Doc(torch.tensor([1.0, math.nan, 1.0]), _nan_out, "nan"),
        ],
        lambda v: tn.sampled_batch_norm(_X, weight=v),
    ),
    (
        "sampled_batch_norm",
        "bias",
        [
            *NOT_A_TENSOR[1:],
            Named(torch.ones(4), "4 entries"),
            Named(torch.ones(3, dtype=torch.bool), "bool"),
        ],
        lambda v: tn.sampled_batch_norm(_X, bias=v),
    ),
    ("sampled_batch_norm", "eps", POSITIVE, lambda v: tn.sampled_batch_norm(_X, eps=v)),
    ("sampled_batch_norm", "center", FLAG, lambda v: tn.sampled_batch_norm(_X, center=v)),
    (
        "sampled_batch_norm",
        "backend",
        ["gpu", 3, ""],
        lambda v: tn.sampled_batch_norm(_X, backend=v),
    ),
    # -- layers ----------------------------------------------------------------------------------
    ("BatchSamplingBN2d", "num_features", ints(1), lambda v: tn.BatchSamplingBN2d(v)),
    (
        "BatchSamplingBN2d",
        "sample_ratio",
        OPEN_FRACTION,
        lambda v: tn.BatchSamplingBN2d(3, sample_ratio=v),
    ),
    ("BatchSamplingBN2d", "eps", POSITIVE, lambda v: tn.BatchSamplingBN2d(3, eps=v)),
    (
        "BatchSamplingBN2d",
        "momentum",
        [x for x in FRACTION if x is not None],
        lambda v: tn.BatchSamplingBN2d(3, momentum=v),
    ),
    ("BatchSamplingBN2d", "affine", FLAG, lambda v: tn.BatchSamplingBN2d(3, affine=v)),
    (
        "BatchSamplingBN2d",
        "track_running_stats",
        FLAG,
        lambda v: tn.BatchSamplingBN2d(3, track_running_stats=v),
    ),
    (
        "BatchSamplingBN2d",
        "device",
        ["gpu", 3.5, "cuda:99"],
        lambda v: tn.BatchSamplingBN2d(3, device=v),
    ),
    (
        "BatchSamplingBN2d",
        "dtype",
        [torch.int64, "float32", 3, torch.complex64],
        lambda v: tn.BatchSamplingBN2d(3, dtype=v),
    ),
    ("BatchSamplingBN2d", "seed", SEED, lambda v: tn.BatchSamplingBN2d(3, seed=v)),
    ("BatchSamplingBN2d", "generator", GENERATOR, lambda v: tn.BatchSamplingBN2d(3, generator=v)),
    (
        "BatchSamplingBN2d.forward",
        "input",
        [
            *tensor_bad(
                _X, dtypes=_FLOATS, docs={"nan": _not_finite, "inf": _not_finite}, skip=("ndim:+1",)
            ),
            Named(torch.randn(8, 4, 4, 4), "4 channels"),
            Named(torch.randn(2, 3, 4, 4), "batch 2"),
        ],
        lambda v: tn.BatchSamplingBN2d(3, seed=0)(v),
        ("x", "batch"),
    ),
    (
        "BatchSamplingBN2d.forward(eval)",
        "input",
        [
            *NOT_A_TENSOR,
            Named(_X.long(), "int"),
            Named(_X.to(torch.complex64), "complex"),
            Named(_X[:0], "empty"),
            Named(torch.randn(8, 4, 4, 4), "4 channels"),
        ],
        lambda v: tn.BatchSamplingBN2d(3, seed=0).eval()(v),
        ("x", "batch"),
    ),
    (
        "BatchSamplingBN1d",
        "sample_ratio",
        OPEN_FRACTION,
        lambda v: tn.BatchSamplingBN1d(3, sample_ratio=v),
    ),
    (
        "BatchSamplingBN1d.forward",
        "input",
        [
            *NOT_A_TENSOR,
            Named(_X2.long(), "int"),
            Named(_X2[:0], "empty"),
            Named(_X, "4-d"),
            Named(_X2[:, :2], "2 channels"),
        ],
        lambda v: tn.BatchSamplingBN1d(3, seed=0)(v),
        ("x", "batch"),
    ),
    (
        "FeatureSamplingBN2d",
        "patch_ratio",
        OPEN_FRACTION,
        lambda v: tn.FeatureSamplingBN2d(3, patch_ratio=v),
    ),
    ("FeatureSamplingBN2d", "seed", SEED, lambda v: tn.FeatureSamplingBN2d(3, seed=v)),
    (
        "FeatureSamplingBN2d.forward",
        "input",
        [
            *NOT_A_TENSOR,
            Named(_X.long(), "int"),
            Named(_X[:0], "empty"),
            Named(_X2, "2-d"),
            Named(torch.randn(1, 3, 1, 1), "one datum"),
        ],
        lambda v: tn.FeatureSamplingBN2d(3, seed=0)(v),
        ("x", "batch"),
    ),
    (
        "FeatureSamplingBN1d",
        "patch_ratio",
        OPEN_FRACTION,
        lambda v: tn.FeatureSamplingBN1d(3, patch_ratio=v),
    ),
    (
        "FeatureSamplingBN1d.forward",
        "input",
        [*NOT_A_TENSOR, Named(_X2, "2-d"), Named(torch.randn(4, 3, 0), "L=0")],
        lambda v: tn.FeatureSamplingBN1d(3, seed=0)(v),
        ("x", "batch"),
    ),
    ("VirtualDatasetNorm2d", "num_virtual", ints(1), lambda v: tn.VirtualDatasetNorm2d(3, v)),
    ("VirtualDatasetNorm2d", "real_ratio", FRACTION, lambda v: tn.VirtualDatasetNorm2d(3, 2, v)),
    (
        "VirtualDatasetNorm2d.forward",
        "input",
        [*NOT_A_TENSOR, Named(_X[:2], "batch 2 of 2 virtual"), Named(_X.long(), "int")],
        lambda v: tn.VirtualDatasetNorm2d(3, 2, seed=0)(v),
        ("x", "num_virtual"),
    ),
    ("VirtualDataset", "model", [None, "net", lambda x: x], lambda v: tn.VirtualDataset(v, _X[:2])),
    (
        "VirtualDataset",
        "virtual",
        [
            *NOT_A_TENSOR,
            Named(_X[:0], "empty"),
            Named(torch.full_like(_X[:2], math.nan), "nan"),
            Named(_X[:2].long(), "int"),
            Named(torch.tensor(1.0), "0-d"),
        ],
        lambda v: tn.VirtualDataset(torch.nn.Identity(), v),
    ),
    (
        "VirtualDataset.forward",
        "x",
        [*NOT_A_TENSOR, Named(torch.randn(4, 3, 5, 5), "5x5")],
        lambda v: tn.VirtualDataset(torch.nn.Identity(), _X[:2])(v),
    ),
    ("SecondMomentNorm2d", "num_features", ints(1), lambda v: tn.SecondMomentNorm2d(v)),
    ("SecondMomentNorm2d", "eps", POSITIVE, lambda v: tn.SecondMomentNorm2d(3, eps=v)),
    (
        "SecondMomentNorm2d",
        "momentum",
        [x for x in FRACTION if x is not None],
        lambda v: tn.SecondMomentNorm2d(3, momentum=v),
    ),
    (
        "SecondMomentNorm2d",
        "sample_ratio",
        OPEN_FRACTION,
        lambda v: tn.SecondMomentNorm2d(3, sample_ratio=v),
    ),
    (
        "SecondMomentNorm2d",
        "device",
        ["gpu", 3.5, "cuda:99"],
        lambda v: tn.SecondMomentNorm2d(3, device=v),
    ),
    (
        "SecondMomentNorm2d",
        "dtype",
        [torch.int64, "float32", 3, torch.complex64],
        lambda v: tn.SecondMomentNorm2d(3, dtype=v),
    ),
    ("SecondMomentNorm2d", "seed", SEED, lambda v: tn.SecondMomentNorm2d(3, seed=v)),
    (
        "SecondMomentNorm2d.forward",
        "input",
        [
            *tensor_bad(
                _X, dtypes=_FLOATS, docs={"nan": _nan_out, "inf": _nan_out}, skip=("ndim:+1",)
            ),
            Named(torch.randn(8, 4, 4, 4), "4 channels"),
        ],
        lambda v: tn.SecondMomentNorm2d(3)(v),
        ("x", "batch"),
    ),
    (
        "SecondMomentNorm2d.forward(eval)",
        "input",
        [
            *NOT_A_TENSOR,
            Named(_X.long(), "int"),
            Named(_X[:0], "empty"),
            Named(torch.randn(8, 4, 4, 4), "4 channels"),
        ],
        lambda v: tn.SecondMomentNorm2d(3).eval()(v),
        ("x", "batch"),
    ),
    (
        "standardize_weight",
        "weight",
        [
            *tensor_bad(
                _W4,
                dtypes=_FLOATS,
                skip=("ndim:+1",),
                docs={"nan": _nan_out, "inf": _nan_out, "device:meta": _meta_like(_W4)},
            ),
            Named(torch.randn(4), "1-d"),
            Named(torch.randn(4, 1), "fan-in 1"),
        ],
        lambda v: tn.standardize_weight(v),
    ),
    (
        "standardize_weight",
        "gain",
        POSITIVE,
        lambda v: tn.standardize_weight(torch.randn(4, 3), gain=v),
    ),
    (
        "standardize_weight",
        "scaled",
        FLAG,
        lambda v: tn.standardize_weight(torch.randn(4, 3), scaled=v),
    ),
    (
        "standardize_weight",
        "eps",
        POSITIVE,
        lambda v: tn.standardize_weight(torch.randn(4, 3), eps=v),
    ),
    (
        "WeightStandardizedConv2d",
        "in_channels",
        ints(1),
        lambda v: tn.WeightStandardizedConv2d(v, 4, 3),
    ),
    (
        "WeightStandardizedConv2d",
        "kernel_size",
        [None, 0, -1, "3", 2.5, (3,), (3, 0)],
        lambda v: tn.WeightStandardizedConv2d(3, 4, v),
    ),
    (
        "WeightStandardizedConv2d",
        "groups",
        [0, 2, "1", 1.5],
        lambda v: tn.WeightStandardizedConv2d(3, 4, 3, groups=v),
    ),
    (
        "WeightStandardizedConv2d",
        "gain",
        POSITIVE,
        lambda v: tn.WeightStandardizedConv2d(3, 4, 3, gain=v),
    ),
    (
        "WeightStandardizedConv2d",
        "scaled",
        FLAG,
        lambda v: tn.WeightStandardizedConv2d(3, 4, 3, scaled=v),
    ),
    (
        "WeightStandardizedConv2d",
        "ws_eps",
        POSITIVE,
        lambda v: tn.WeightStandardizedConv2d(3, 4, 3, ws_eps=v),
    ),
    (
        "WeightStandardizedConv2d.forward",
        "input",
        [
            *NOT_A_TENSOR,
            Named(torch.randn(2, 4, 5, 5), "4 channels"),
            Named(torch.randn(2, 3, 5, 5).long(), "int"),
            Named(torch.randn(2, 3, 2, 2), "2x2"),
        ],
        lambda v: tn.WeightStandardizedConv2d(3, 4, 3)(v),
    ),
]

#: ``toolkit.norm.analysis`` (the paper's experiments; not re-exported by ``toolkit.norm``):
#: its fast functions.  The training functions take their arguments through the same checks.
_ACTS = torch.randn(16, 2, 4, 4, generator=_G)
_FLAT = _ACTS.clone()
_FLAT[:, 1] = 3.0  # a constant channel: its variance is 0
ANALYSIS_ROWS: list[Row] = [
    ("make_norm", "kind", [None, "BN", "batch", 3], lambda v: analysis.make_norm(v, 4)),
    ("make_norm", "channels", ints(1), lambda v: analysis.make_norm("bn", v)),
    ("make_norm", "ratio", OPEN_FRACTION, lambda v: analysis.make_norm("bs", 4, ratio=v)),
    ("make_norm", "seed", SEED, lambda v: analysis.make_norm("fs", 4, seed=v)),
    *[
        (
            label,
            "acts",
            [
                *tensor_bad(_ACTS, dtypes=_FLOATS, skip=("ndim:+1",)),
                Named(_FLAT, "constant channel"),
                Named(_ACTS[:1], "N=1"),
            ],
            call,
        )
        for label, call in (
            ("estimation_curves", lambda v: analysis.estimation_curves(v, trials=2)),
            ("sampling_error", lambda v: analysis.sampling_error(v, "BS", 0.5, trials=2)),
            ("correlation_profile", lambda v: analysis.correlation_profile(v)),
        )
    ],
    (
        "estimation_curves",
        "counts",
        [16, "16", [], [0], [17], [16.0], [True], [None]],
        lambda v: analysis.estimation_curves(_ACTS, v, trials=2),
    ),
    (
        "estimation_curves",
        "trials",
        ints(1, 10**4),
        lambda v: analysis.estimation_curves(_ACTS, trials=v),
    ),
    (
        "estimation_curves",
        "seed",
        SEED,
        lambda v: analysis.estimation_curves(_ACTS, trials=2, seed=v),
    ),
    (
        "estimation_curves",
        "methods",
        ["BS", [], ["bs"], [None]],
        lambda v: analysis.estimation_curves(_ACTS, trials=2, methods=v),
    ),
    ("sampling_error", "method", [None, "bs", 3], lambda v: analysis.sampling_error(_ACTS, v, 0.5)),
    ("sampling_error", "ratio", OPEN_FRACTION, lambda v: analysis.sampling_error(_ACTS, "BS", v)),
    (
        "sampling_error",
        "batch_size",
        ints(1, 16)[1:],
        lambda v: analysis.sampling_error(_ACTS, "BS", 0.5, batch_size=v, trials=2),
    ),
    (
        "sampling_error",
        "trials",
        ints(1, 10**4),
        lambda v: analysis.sampling_error(_ACTS, "BS", 0.5, trials=v),
    ),
    (
        "correlation_profile",
        "max_lag",
        ints(1, 3)[1:],
        lambda v: analysis.correlation_profile(_ACTS, v),
    ),
]

CASES = cases(ROWS)
ANALYSIS_CASES = cases(ANALYSIS_ROWS)

if __name__ == "__main__":
    main({"norm": CASES, "analysis": ANALYSIS_CASES})
