"""Bad-input cases for every public function of ``toolkit.verify`` and how to judge them.

A case is one call with one bad argument (all others valid and tiny: a one-layer model of
width 4, three tokens).  Its outcome is

* ``clear``: a TypeError or ValueError whose message names the argument (anywhere in it),
* ``documented``: a few calls have a documented result instead of an error (``Case.expect``),
  and it came back,
* ``obscure``: any other exception, or one that does not name the argument,
* ``silent``: the call returned (the bad value was accepted, or broke its promise),
* ``hang``: it ran past the time limit.

The classifier is the shared one of ``tests/_sweep.py``.  ``python -m tests.verify._sweep``
prints the counts (issue 10 asks for them); ``test_bad_inputs.py`` asserts that every case is
``clear`` or ``documented``.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import toolkit.verify as V

from .. import _sweep as _shared
from .._sweep import Case


def _model(max_len: int = 8, dim: int = 4) -> V.TransformerClassifier:
    torch.manual_seed(0)
    return V.TransformerClassifier(
        10, dim=dim, heads=2, ffn_dim=8, num_classes=3, max_len=max_len
    ).double()


_M = _model()
_E = _M.embed(torch.tensor([[1, 2, 3]])).detach()
_BALL = V.LpBall(0.01, p=2, positions=[1])
_LO, _HI = V.bounds(_M, _E, _BALL, "ibp")
_Y = int(_M(_E).argmax())
_G = V.build_graph(_M, 3)
_BIG = _model(max_len=24, dim=2)
_E20 = _BIG.embed(torch.arange(20)[None] % 10).detach()

# -- bad values per kind of argument ----------------------------------------------------
_NOT_A_NUMBER = [None, "1", [1.0], True, object()]
REAL = [*_NOT_A_NUMBER, math.nan, math.inf, -math.inf, 1j]
POSITIVE = [*REAL, 0, -1, -1e-300]
NONNEG = [*REAL, -1, -1e-300]
POS_INT = [None, "3", 0, -1, 2.5, math.nan, True, [3], 2.0]
NONNEG_INT = [None, "3", -1, -2, 2.5, math.nan, True]
METHOD = [None, "deeppoly", 3, "CROWN "]
MODEL = [None, "model", torch.nn.Linear(4, 3), 3]
TENSOR_E = [
    None,
    [[1.0, 2.0]],
    np.ones((1, 3, 4)),
    torch.zeros(0, 3, 4, dtype=torch.float64),
    torch.zeros(4),
    torch.zeros(1, 0, 4, dtype=torch.float64),
    torch.zeros(1, 9, 4, dtype=torch.float64),
    torch.zeros(1, 3, 5, dtype=torch.float64),
    torch.ones(1, 3, 4, dtype=torch.int64),
    torch.full((1, 3, 4), math.nan, dtype=torch.float64),
    torch.full((1, 3, 4), math.inf, dtype=torch.float64),
    _E.clone().index_put_(
        (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])),
        torch.tensor([-math.inf], dtype=torch.float64),
    ),
]
SPEC = [None, 0.1, "linf", {1: torch.zeros(2, 4)}, V.LpBall(0.1, positions=[5])]
LABEL = [0.5, "1", 3, -1, [0, 1], torch.tensor([0.5]), True]
# CUDA is a bad value only where torch sees no GPU
_NO_CUDA = [] if torch.cuda.is_available() else ["cuda"]
DEVICE = ["gpu", 3, "tpu", "cuda:99", *_NO_CUDA]
BOUND = [
    None,
    "lo",
    torch.zeros(1, 2, dtype=torch.float64),
    torch.zeros(1, 3, dtype=torch.int64),
]
SEED = [-1, 2**64, 1.5, "0", math.nan]
POSITIONS = [None, "1", [5], [-9], [1.5], [], 3]
P_NORM = [None, 3, 0, "two", math.nan, -1]
DEVICE_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("bounds", lambda v: V.bounds(_M, _E, _BALL, "ibp", device=v)),
    ("margin_bounds", lambda v: V.margin_bounds(_M, _E, _BALL, 0, "ibp", device=v)),
    ("bound_profile", lambda v: V.bound_profile(_M, _E, _BALL, 0, "ibp", device=v)),
    ("graph_bounds", lambda v: V.graph_bounds(_G, _E, _BALL, "ibp", device=v)),
    ("certified_radius", lambda v: V.certified_radius(_M, _E, 0, [1], 2, "ibp", 0.1, device=v)),
    (
        "check_soundness",
        lambda v: V.check_soundness(_M, _E, _BALL, _LO, _HI, 4, 0, 0, device=v),
    ),
]


def _with_env(value: str, call: Callable[[], Any]) -> Any:
    """``call()`` with ``TOOLKIT_DEVICE=value`` (restored after)."""
    old = os.environ.get("TOOLKIT_DEVICE")
    os.environ["TOOLKIT_DEVICE"] = value
    try:
        return call()
    finally:
        if old is None:
            del os.environ["TOOLKIT_DEVICE"]
        else:
            os.environ["TOOLKIT_DEVICE"] = old


def _sound(**kw: Any) -> Any:
    args: dict[str, Any] = dict(samples=4, pgd_steps=1, pgd_restarts=1, seed=0)
    args.update(kw)
    return V.check_soundness(_M, _E, _BALL, args.pop("lower", _LO), args.pop("upper", _HI), **args)


def _not_ok(result: Any) -> bool:
    return isinstance(result, V.SoundnessResult) and not result.ok


# (function label, argument name, bad values, call taking the bad value)
SCALARS: list[tuple[str, str, list[Any], Callable[[Any], Any]]] = [
    ("bounds", "model", MODEL, lambda v: V.bounds(v, _E, _BALL)),
    ("bounds", "e", TENSOR_E, lambda v: V.bounds(_M, v, _BALL, "ibp")),
    ("bounds", "spec", SPEC, lambda v: V.bounds(_M, _E, v, "ibp")),
    ("bounds", "method", METHOD, lambda v: V.bounds(_M, _E, _BALL, v)),
    ("bounds", "margins_for", LABEL, lambda v: V.bounds(_M, _E, _BALL, "ibp", margins_for=v)),
    ("bounds", "memory_limit", POS_INT[1:], lambda v: V.bounds(_M, _E, _BALL, memory_limit=v)),
    ("bounds", "chunk_size", POS_INT[1:], lambda v: V.bounds(_M, _E, _BALL, chunk_size=v)),
    ("bounds", "alpha_steps", NONNEG_INT, lambda v: V.bounds(_M, _E, _BALL, alpha_steps=v)),
    ("bounds", "alpha_lr", POSITIVE, lambda v: V.bounds(_M, _E, _BALL, alpha_lr=v)),
    ("margin_bounds", "label", [None, *LABEL], lambda v: V.margin_bounds(_M, _E, _BALL, v)),
    ("margin_bounds", "e", TENSOR_E[:4], lambda v: V.margin_bounds(_M, v, _BALL, 0, "ibp")),
    ("bound_profile", "label", LABEL, lambda v: V.bound_profile(_M, _E, _BALL, v, "ibp")),
    ("bound_profile", "e", TENSOR_E, lambda v: V.bound_profile(_M, v, _BALL, 0, "ibp")),
    ("bound_profile", "spec", SPEC, lambda v: V.bound_profile(_M, _E, v, 0, "ibp")),
    (
        "bound_profile",
        "chunk_size",
        POS_INT[1:],
        lambda v: V.bound_profile(_M, _E, _BALL, 0, chunk_size=v),
    ),
    ("graph_bounds", "graph", [None, "g", V.Graph()], lambda v: V.graph_bounds(v, _E, _BALL)),
    ("graph_bounds", "e", TENSOR_E, lambda v: V.graph_bounds(_G, v, _BALL, "ibp")),
    ("graph_bounds", "spec", SPEC[:3], lambda v: V.graph_bounds(_G, _E, v, "ibp")),
    (
        "graph_bounds",
        "chunk_size",
        POS_INT[1:],
        lambda v: V.graph_bounds(_G, _E, _BALL, chunk_size=v),
    ),
    (
        "certified_radius",
        "label",
        LABEL,
        lambda v: V.certified_radius(_M, _E, v, [1], 2, "ibp", 0.1),
    ),
    (
        "certified_radius",
        "positions",
        POSITIONS,
        lambda v: V.certified_radius(_M, _E, 0, v, 2, "ibp", 0.1),
    ),
    ("certified_radius", "p", P_NORM, lambda v: V.certified_radius(_M, _E, 0, [1], v, "ibp", 0.1)),
    ("certified_radius", "e", TENSOR_E, lambda v: V.certified_radius(_M, v, 0, [1], 2, "ibp", 0.1)),
    (
        "certified_radius",
        "tol",
        [*POSITIVE, 1.0, 2.0],
        lambda v: V.certified_radius(_M, _E, 0, [1], 2, "ibp", v, max_eps=1.0),
    ),
    (
        "certified_radius",
        "max_eps",
        POSITIVE,
        lambda v: V.certified_radius(_M, _E, 0, [1], 2, "ibp", 1e-3, v),
    ),
    (
        "certified_radius",
        "chunk_size",
        POS_INT[1:],
        lambda v: V.certified_radius(_M, _E, 0, [1], chunk_size=v),
    ),
    ("estimate_memory", "model", MODEL, lambda v: V.estimate_memory(v, 3)),
    ("estimate_memory", "seq_len", [*POS_INT, 9], lambda v: V.estimate_memory(_M, v)),
    ("estimate_memory", "batch", [*POS_INT, -2], lambda v: V.estimate_memory(_M, 3, batch=v)),
    ("estimate_memory", "method", METHOD, lambda v: V.estimate_memory(_M, 3, method=v)),
    ("estimate_memory", "spec", ["ab", 0.1, [1.5]], lambda v: V.estimate_memory(_M, 3, v)),
    (
        "estimate_memory",
        "chunk_size",
        POS_INT[1:],
        lambda v: V.estimate_memory(_M, 3, chunk_size=v),
    ),
    (
        "estimate_memory",
        "memory_limit",
        POS_INT[1:],
        lambda v: V.estimate_memory(_M, 3, memory_limit=v),
    ),
    ("margin_matrix", "label", LABEL, lambda v: V.margin_matrix(v, 1, 3)),
    ("margin_matrix", "B", POS_INT, lambda v: V.margin_matrix(0, v, 3)),
    ("margin_matrix", "C", [*POS_INT, 1], lambda v: V.margin_matrix(0, 1, v)),
    ("check_soundness", "samples", POS_INT, lambda v: _sound(samples=v)),
    ("check_soundness", "pgd_steps", NONNEG_INT, lambda v: _sound(pgd_steps=v)),
    ("check_soundness", "pgd_restarts", POS_INT, lambda v: _sound(pgd_restarts=v)),
    ("check_soundness", "atol", NONNEG, lambda v: _sound(atol=v)),
    ("check_soundness", "rtol", NONNEG, lambda v: _sound(rtol=v)),
    ("check_soundness", "seed", SEED, lambda v: _sound(seed=v)),
    ("check_soundness", "lower", BOUND, lambda v: _sound(lower=v)),
    ("check_soundness", "upper", BOUND, lambda v: _sound(upper=v)),
    ("check_soundness", "spec", SPEC[:3], lambda v: V.check_soundness(_M, _E, v, _LO, _HI)),
    ("check_soundness", "e", TENSOR_E, lambda v: V.check_soundness(_M, v, _BALL, _LO, _HI, 4, 0)),
    ("check_soundness", "margins_for", LABEL, lambda v: _sound(margins_for=v)),
    ("LpBall", "eps", [*NONNEG, torch.tensor([math.nan]), torch.ones(2, 2)], lambda v: V.LpBall(v)),
    ("LpBall", "p", P_NORM, lambda v: V.LpBall(0.1, p=v)),
    ("LpBall", "positions", ["1", 3, [1.5], [None]], lambda v: V.LpBall(0.1, positions=v)),
    (
        "Synonyms",
        "candidates",
        [None, {}, {1: None}, {1: torch.zeros(4)}, {1: torch.zeros(0, 4)}],
        lambda v: V.Synonyms(v),
    ),
    ("Synonyms", "budget", POS_INT, lambda v: V.Synonyms({1: torch.zeros(2, 4)}, v)),
    (
        "Synonyms",
        "max_subsets",
        # 20 positions, budget 10: 184,756 subsets
        [20],
        lambda v: V.bounds(
            _BIG, _E20, V.Synonyms({t: torch.zeros(1, 2) for t in range(v)}, 10), "ibp"
        ),
    ),
    (
        "Synonyms.nearest",
        "k",
        [*POS_INT, 10],
        lambda v: V.Synonyms.nearest(_M, torch.tensor([1, 2]), [1], k=v),
    ),
    (
        "Synonyms.nearest",
        "positions",
        POSITIONS[1:],
        lambda v: V.Synonyms.nearest(_M, torch.tensor([1, 2]), v),
    ),
    ("build_graph", "model", MODEL, lambda v: V.build_graph(v, 3)),
    ("build_graph", "T", [*POS_INT, 9], lambda v: V.build_graph(_M, v)),
    (
        "TransformerClassifier",
        "vocab_size",
        POS_INT,
        lambda v: V.TransformerClassifier(v, dim=4, heads=2),
    ),
    (
        "TransformerClassifier",
        "heads",
        [*POS_INT, 3],
        lambda v: V.TransformerClassifier(5, dim=4, heads=v),
    ),
    (
        "TransformerClassifier",
        "layernorm",
        METHOD,
        lambda v: V.TransformerClassifier(5, dim=4, heads=2, layernorm=v),
    ),
    (
        "TransformerClassifier.embed",
        "token_ids",
        [None, "a", torch.tensor([10]), torch.tensor([-1]), torch.tensor([0.5])],
        lambda v: _M.embed(v),
    ),
    ("make_dataset", "n", POS_INT, lambda v: V.make_dataset(v)),
    ("make_dataset", "seed", SEED, lambda v: V.make_dataset(2, seed=v)),
    (
        "make_dataset",
        "min_len",
        [*POS_INT, 1, 2, 3],
        lambda v: V.make_dataset(4, min_len=v, max_len=12),
    ),
    ("make_dataset", "max_len", [*POS_INT, 4], lambda v: V.make_dataset(2, min_len=6, max_len=v)),
    ("encode", "sentence", [None, 3, "", "!!"], lambda v: V.encode(v)),
    (
        "Vocab.decode",
        "ids",
        [[10**6], [-(10**6)], "a", [0.5]],
        lambda v: V.load_default_model()[1].decode(v),
    ),
    *[(f, "device", DEVICE, c) for f, c in DEVICE_CALLS],
    # the environment's device, with no device= argument (an invalid value, CUDA without one)
    *[
        (f, "TOOLKIT_DEVICE", ["gpu", *_NO_CUDA], lambda v, c=c: _with_env(v, lambda: c(None)))
        for f, c in DEVICE_CALLS
    ],
]

# calls whose documented result is not an error: non-finite bounds fail the check
DOCUMENTED: list[tuple[str, str, list[Any], Callable[[Any], Any], Callable[[Any], bool]]] = [
    (
        "check_soundness",
        "lower",
        [math.nan, -math.inf, math.inf],
        lambda v: _sound(lower=torch.full_like(_LO, v)),
        _not_ok,
    ),
    (
        "check_soundness",
        "upper",
        [math.nan, -math.inf, math.inf],
        lambda v: _sound(upper=torch.full_like(_HI, v)),
        _not_ok,
    ),
    # a tol below the float64 spacing returns (the interval stops shrinking)
    (
        "certified_radius",
        "tol",
        [1e-300, 5e-324],
        lambda v: V.certified_radius(_M, _E, _Y, [1], 2, "ibp", v, max_eps=1.0),
        lambda r: isinstance(r, torch.Tensor) and r.shape == (1, 1) and 0 < float(r) < 1,
    ),
    # atol=0 with bounds that are wrong by 1.0 must not pass
    ("check_soundness", "atol", [0.0, 1e-6], lambda v: _sound(atol=v, lower=_LO + 1.0), _not_ok),
]


def all_cases() -> list[Case]:
    """One case per (function, argument, bad value)."""
    cases = []
    for label, name, bad, call in SCALARS:
        for value in bad:
            names = {"device": ("device", "TOOLKIT_DEVICE"), "spec": ("spec", "positions")}.get(
                name, (name,)
            )
            text = repr(value)[:30]
            cases.append(Case(f"{label}[{name}={text}]", lambda c=call, v=value: c(v), names))
    for label, name, bad, call, expect in DOCUMENTED:
        for value in bad:
            cases.append(
                Case(f"{label}[{name}={value!r}]", lambda c=call, v=value: c(v), (name,), expect)
            )
    return cases


def classify(case: Case, seconds: float = 20.0) -> tuple[str, str]:
    """The shared classifier; these cases' names may be phrases, cited anywhere."""
    return _shared.classify(case, seconds, match="substring")


def main(seconds: float = 20.0) -> None:
    counts: Counter[str] = Counter()
    for case in all_cases():
        outcome, detail = classify(case, seconds=seconds)
        counts[outcome] += 1
        if outcome not in ("clear", "documented"):
            print(f"{outcome:8s} {case.label}: {detail[:200]}")
    print(dict(counts), "of", sum(counts.values()))


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
