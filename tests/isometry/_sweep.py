"""Bad-input cases for every public function of ``toolkit.isometry`` and how to judge them.

A case is one call with one bad argument (all others valid and small).  Its outcome is

* ``clear``: a TypeError or ValueError whose message names the argument,
* ``obscure``: any other exception, or one that does not name the argument,
* ``silent``: the call returned (the bad value was accepted),
* ``hang``: it ran past the time limit.

The classifier is the shared one of ``tests/_sweep.py``.  ``python -m tests.isometry._sweep``
prints the counts (issue 10 asks for them); ``test_bad_inputs.py`` asserts that every case is
``clear``.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import sympy as sp
import torch
from torch import nn

import toolkit.isometry as iso

from .. import _sweep as _shared
from .._sweep import Case

L = sp.Symbol("L", positive=True)


# -- bad values per kind of argument ----------------------------------------------------
_NOT_A_NUMBER = [None, "1", [1.0], True, object()]
NON_FINITE = [math.nan, math.inf, -math.inf, sp.nan, sp.oo, -sp.oo, sp.zoo]
COMPLEX = [1j, sp.I, 1 + sp.I]
REAL = _NOT_A_NUMBER + NON_FINITE + COMPLEX
POSITIVE = [*REAL, 0, -1, -1e-300, -sp.Rational(1, 2)]
NONNEG = [*REAL, -1, -1e-300]
UNIT = [*REAL, -0.1, 1.5, 5]
POS_INT = [None, "3", 0, -1, 2.5, math.nan, True, [3], 2.0]
DEPTH = [*POS_INT, sp.I * L, sp.Symbol("L", complex=True), sp.Symbol("L", imaginary=True), -L]
SEQ = [None, "12", 3, [], [math.nan], [1, math.inf], [1, "a"], [sp.nan, 1], [1, None]]
BLOCK = [None, "relu", 3, iso.ReLU, nn.ReLU()]
BLOCKS = [None, "relu", iso.ReLU(), [], [iso.ReLU(), "relu"], [iso.Linear(4, 8), iso.Linear(3, 3)]]
DESIGN = [None, "mlp", 3, {"widht": 3}, {"width": 0}, {"slope": 5}, {"gain": math.nan}]
MODULE = [None, "net", lambda x: x, 3]
TENSOR = [
    None,
    [[1.0, 2.0]],
    np.ones((2, 4)),
    torch.zeros(0, 4),
    torch.zeros(4),
    torch.ones(2, 4, dtype=torch.int64),
    torch.full((2, 4), math.nan),
    torch.full((2, 4), math.inf),
]
SEED = [-1, 2**64, 1.5, "0", math.nan]
DEVICE = ["gpu", 3, "tpu", "cuda:99"]
DTYPE = [torch.int64, "float64", np.float64, 3]
FLAG = [None, 1, "yes", 0.0]
CHOICE = [None, "nope", 3, ""]


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU())


_X = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
_D = iso.NetworkDesign(width=4, depth=1)
_LIN = iso.Linear(4, 4, gain=1)


# (function label, argument name, bad values, call taking the bad value)
SCALARS: list[tuple[str, str, list[Any], Callable[[Any], Any]]] = [
    ("gaussian_expectation", "q", POSITIVE, lambda v: iso.gaussian_expectation(np.cos, v)),
    ("gaussian_expectation", "fn", [None, "cos", 3], lambda v: iso.gaussian_expectation(v, 1.0)),
    ("spectral_density", "block", BLOCK, lambda v: iso.spectral_density(v, num=16)),
    ("spectral_density", "q", POSITIVE, lambda v: iso.spectral_density(_LIN, q=v, num=16)),
    ("spectral_density", "num", [*POS_INT, 7, 10**7], lambda v: iso.spectral_density(_LIN, num=v)),
    ("spectral_density", "eta", POSITIVE[1:], lambda v: iso.spectral_density(_LIN, num=16, eta=v)),
    (
        "spectral_density",
        "x",
        ["a", [math.nan], [], [[1.0]], np.ones(10**6)],
        lambda v: iso.spectral_density(_LIN, x=v),
    ),
    ("spectral_density", "Scale", [0, sp.Integer(0)], lambda v: iso.spectral_density(iso.Scale(v))),
    ("Block.moments", "order", POS_INT, lambda v: _LIN.moments(order=v)),
    ("Block.moments", "q", POSITIVE, lambda v: iso.Tanh().moments(q=v)),
    ("Block.propagate_q", "q", POSITIVE, lambda v: iso.ReLU().propagate_q(v)),
    ("Linear", "fan_in", POS_INT, lambda v: iso.Linear(v, 4)),
    ("Linear", "fan_out", POS_INT, lambda v: iso.Linear(4, v)),
    ("Linear", "gain", POSITIVE, lambda v: iso.Linear(4, 4, gain=v)),
    ("Linear", "init", CHOICE, lambda v: iso.Linear(4, 4, init=v)),
    ("Conv2d", "c_in", POS_INT, lambda v: iso.Conv2d(v, 4, 3)),
    ("Conv2d", "kernel_size", POS_INT, lambda v: iso.Conv2d(4, 4, v)),
    ("Conv2d", "gain", POSITIVE, lambda v: iso.Conv2d(4, 4, 3, gain=v)),
    ("WeightNorm", "gain", POSITIVE, lambda v: iso.WeightNorm(4, 4, 3, gain=v)),
    ("AvgPool", "kernel_size", POS_INT, lambda v: iso.AvgPool(v)),
    ("Scale", "factor", REAL, lambda v: iso.Scale(v)),
    ("Residual", "scale", REAL, lambda v: iso.Residual(_LIN, scale=v)),
    ("Residual", "branch", BLOCK, lambda v: iso.Residual(v)),
    ("BatchNorm", "gamma", REAL, lambda v: iso.BatchNorm(gamma=v)),
    ("BatchNorm", "beta", REAL, lambda v: iso.BatchNorm(beta=v)),
    ("BatchNorm", "eps", NONNEG, lambda v: iso.BatchNorm(eps=v)),
    ("LeakyReLU", "slope", UNIT, lambda v: iso.LeakyReLU(v)),
    ("PReLU", "scale", POSITIVE, lambda v: iso.PReLU(0.2, v)),
    ("Dropout", "p", [*UNIT, 1.0], lambda v: iso.Dropout(v)),
    ("HardTanh", "min_val", REAL, lambda v: iso.HardTanh(v, 1.0)),
    ("Serial", "blocks", BLOCKS, lambda v: iso.Serial(v)),
    ("Parallel", "branches", BLOCKS, lambda v: iso.Parallel(v)),
    ("Concat", "branches", BLOCKS, lambda v: iso.Concat(v)),
    ("repeat", "block", BLOCK, lambda v: iso.repeat(v, 2)),
    ("repeat", "depth", DEPTH, lambda v: iso.repeat(_LIN, v)),
    ("profile", "block", BLOCK, lambda v: iso.profile(v)),
    ("profile", "q", POSITIVE, lambda v: iso.profile(iso.Tanh(), q=v)),
    ("profile", "order", POS_INT, lambda v: iso.profile(_LIN, order=v)),
    ("profile", "flatten", FLAG, lambda v: iso.profile(_LIN, flatten=v)),
    # (inf is allowed: an overflowing chain's honest moments)
    ("Moments", "values", [None, "a", math.nan, sp.nan, True], lambda v: iso.Moments(1, v)),
    ("moments_to_cumulants", "moments", SEQ, lambda v: iso.moments_to_cumulants(v)),
    ("cumulants_to_moments", "cumulants", SEQ, lambda v: iso.cumulants_to_moments(v)),
    ("r_transform", "moments", SEQ, lambda v: iso.r_transform(v)),
    ("r_transform", "z", ["w", 3], lambda v: iso.r_transform([1, 2], z=v)),
    ("r_transform", "z", [sp.Symbol("z"), sp.Symbol("w")], lambda v: iso.r_transform([v, 2], z=v)),
    ("s_transform", "moments", [*SEQ, [0, 1]], lambda v: iso.s_transform(v)),
    ("s_transform", "z", ["w", 3], lambda v: iso.s_transform([1, 2], z=v)),
    (
        "s_transform_coefficients",
        "moments",
        [*SEQ, [0, 1]],
        lambda v: iso.s_transform_coefficients(v),
    ),
    (
        "moments_from_s_transform",
        "coefficients",
        [*SEQ, [0, 1]],
        lambda v: iso.moments_from_s_transform(v),
    ),
    (
        "free_additive_convolution",
        "moment_seqs",
        SEQ,
        lambda v: iso.free_additive_convolution([1, 2], v),
    ),
    (
        "free_multiplicative_convolution",
        "moment_seqs",
        SEQ,
        lambda v: iso.free_multiplicative_convolution([1, 2], v),
    ),
    (
        "free_multiplicative_convolution",
        "ratios",
        ["a", [1], [1, math.nan], [1, 0], [1, -1]],
        lambda v: iso.free_multiplicative_convolution([1, 2], [1, 2], ratios=v),
    ),
    ("r_diagonal_sum", "moment_seqs", SEQ, lambda v: iso.r_diagonal_sum([1, 2], v)),
    (
        "noncrossing_partitions",
        "n",
        [None, "3", -1, 2.5, True],
        lambda v: list(iso.noncrossing_partitions(v)),
    ),
    ("marchenko_pastur_moments", "order", POS_INT, lambda v: iso.marchenko_pastur_moments(v)),
    ("marchenko_pastur_moments", "ratio", POSITIVE, lambda v: iso.marchenko_pastur_moments(2, v)),
    (
        "marchenko_pastur_moments",
        "scale",
        POSITIVE,
        lambda v: iso.marchenko_pastur_moments(2, 1, v),
    ),
    ("marchenko_pastur_density", "ratio", POSITIVE, lambda v: iso.marchenko_pastur_density(1.0, v)),
    (
        "marchenko_pastur_density",
        "scale",
        POSITIVE,
        lambda v: iso.marchenko_pastur_density(1.0, 1, v),
    ),
    ("selu_parameters", "epsilon", REAL, lambda v: iso.selu_parameters(v)),
    ("selu_parameters", "gain", POSITIVE, lambda v: iso.selu_parameters(0.5, gain=v)),
    ("selu_parameters", "q", POSITIVE, lambda v: iso.selu_parameters(0.5, q=v)),
    ("leaky_relu_slope", "depth", DEPTH, lambda v: iso.leaky_relu_slope(v, 0.5)),
    ("leaky_relu_slope", "target_variance", [*NONNEG, 3], lambda v: iso.leaky_relu_slope(2, v)),
    ("NetworkDesign", "width", POS_INT, lambda v: iso.NetworkDesign(width=v)),
    ("NetworkDesign", "depth", POS_INT, lambda v: iso.NetworkDesign(depth=v)),
    (
        "NetworkDesign",
        "gain",
        [*POSITIVE[:5], 0, -1, math.nan, math.inf],
        lambda v: iso.NetworkDesign(gain=v),
    ),
    (
        "NetworkDesign",
        "slope",
        [*UNIT[:5], -0.1, 1.5, 5, math.nan],
        lambda v: iso.NetworkDesign(slope=v),
    ),
    (
        "NetworkDesign",
        "residual_scale",
        [None, "1", math.nan, math.inf],
        lambda v: iso.NetworkDesign(residual_scale=v),
    ),
    ("NetworkDesign", "architecture", CHOICE, lambda v: iso.NetworkDesign(architecture=v)),
    ("NetworkDesign", "activation", CHOICE, lambda v: iso.NetworkDesign(activation=v)),
    ("build_network", "design", DESIGN, lambda v: iso.build_network(v, seed=0)),
    ("build_network", "width", POS_INT[1:], lambda v: iso.build_network(_D, width=v, seed=0)),
    ("build_network", "seed", SEED, lambda v: iso.build_network(_D, seed=v)),
    ("build_network", "device", DEVICE, lambda v: iso.build_network(_D, seed=0, device=v)),
    ("build_network", "dtype", DTYPE, lambda v: iso.build_network(_D, seed=0, dtype=v)),
    ("sample_input", "batch", POS_INT, lambda v: iso.sample_input(_D, v, seed=0)),
    ("sample_input", "device", DEVICE, lambda v: iso.sample_input(_D, 2, seed=0, device=v)),
    ("sample_input", "dtype", DTYPE, lambda v: iso.sample_input(_D, 2, seed=0, dtype=v)),
    (
        "sample_block_moments",
        "samples",
        POS_INT,
        lambda v: iso.sample_block_moments(_D, samples=v, batch=2, probes=2, seed=0),
    ),
    (
        "sample_block_moments",
        "device",
        DEVICE,
        lambda v: iso.sample_block_moments(_D, samples=1, batch=2, probes=2, seed=0, device=v),
    ),
    ("sample_spectrum", "samples", POS_INT, lambda v: iso.sample_spectrum(_D, samples=v, seed=0)),
    (
        "sample_spectrum",
        "inputs",
        POS_INT,
        lambda v: iso.sample_spectrum(_D, samples=1, inputs=v, seed=0),
    ),
    (
        "sample_spectrum",
        "device",
        DEVICE,
        lambda v: iso.sample_spectrum(_D, samples=1, seed=0, device=v),
    ),
    ("empirical", "module", MODULE, lambda v: iso.empirical(v, _X, probes=2, seed=0)),
    ("empirical", "x", TENSOR, lambda v: iso.empirical(_mlp(), v, probes=2, seed=0)),
    ("empirical", "probes", POS_INT, lambda v: iso.empirical(_mlp(), _X, probes=v, seed=0)),
    ("empirical", "seed", SEED, lambda v: iso.empirical(_mlp(), _X, probes=2, seed=v)),
    (
        "empirical",
        "distribution",
        CHOICE,
        lambda v: iso.empirical(_mlp(), _X, 2, 0, distribution=v),
    ),
    ("empirical", "dtype", DTYPE, lambda v: iso.empirical(_mlp(), _X, 2, 0, dtype=v)),
    (
        "empirical",
        "chunk_size",
        POS_INT[1:],
        lambda v: iso.empirical(_mlp(), _X, 2, 0, chunk_size=v),
    ),
    ("analyze", "module", MODULE, lambda v: iso.analyze(v, _X, probes=2, seed=0)),
    ("analyze", "x", TENSOR, lambda v: iso.analyze(_mlp(), v, probes=2, seed=0)),
    ("analyze", "probes", POS_INT, lambda v: iso.analyze(_mlp(), _X, probes=v, seed=0)),
    ("analyze", "total", FLAG, lambda v: iso.analyze(_mlp(), _X, 2, 0, total=v)),
    ("predict_block", "module", MODULE, lambda v: iso.predict_block(v)),
    ("design_block", "design", DESIGN, lambda v: iso.design_block(v)),
    ("design_formula", "design", DESIGN, lambda v: iso.design_formula(v)),
    (
        "ResidualBlock",
        "scale",
        [None, "1", math.nan, math.inf],
        lambda v: iso.ResidualBlock(nn.Identity(), v),
    ),
]


def all_cases() -> list[Case]:
    """One case per (function, argument, bad value)."""
    cases = []
    for label, name, bad, call in SCALARS:
        for value in bad:
            # messages name a design field as "NetworkDesign.width", a sequence entry as
            # "moments[1]", an env-derived device as TOOLKIT_DEVICE; the argument name covers
            # all of these
            names = {"Scale": ("point mass",), "design": ("design", "NetworkDesign.")}.get(
                name, (name,)
            )
            text = repr(value)[:30]
            cases.append(Case(f"{label}[{name}={text}]", lambda c=call, v=value: c(v), names))
    return cases


def classify(case: Case, seconds: float = 20.0) -> tuple[str, str]:
    """The shared classifier; these cases' names may be phrases ("point mass"), cited
    anywhere in the message."""
    return _shared.classify(case, seconds, match="substring")


def main() -> None:
    counts: Counter[str] = Counter()
    for case in all_cases():
        outcome, detail = classify(case, seconds=20.0)
        counts[outcome] += 1
        if outcome != "clear":
            print(f"{outcome:8s} {case.label}: {detail}")
    print(dict(counts), "of", sum(counts.values()))


if __name__ == "__main__":
    sys.exit(main())
