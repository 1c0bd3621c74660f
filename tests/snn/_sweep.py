"""Bad-input cases for every public function and class of ``toolkit.snn`` (issue 10).

See ``tests/_sweep.py`` for the outcomes; ``python -m tests.snn._sweep`` prints the counts,
``test_bad_inputs.py`` requires every case to be ``clear`` or ``documented``.
The file is one long table (a row per argument of every public function), hence its
length.
"""

from __future__ import annotations

import math
from typing import Any

import torch

import toolkit.snn as snn

from .._sweep import (
    CHOICE,
    FLAG,
    FRACTION,
    GENERATOR,
    NOT_A_TENSOR,
    POSITIVE,
    REAL,
    SEED,
    Doc,
    Named,
    Row,
    cases,
    has_nan,
    ints,
    main,
    noncontiguous,
    tensor_bad,
)

_G = torch.Generator().manual_seed(0)
_X = torch.rand(3, 4, generator=_G)  # a [T, N] current, or a [B, F] input
_IMG = torch.rand(5, 1, 4, 4, generator=_G)
_Y = torch.tensor([0, 1, 0, 1, 1])


def _net() -> snn.SpikingNet:
    return snn.spiking_mlp((16, 6, 2), steps=2, surrogate="triangle")


_PROFILE = snn.sparsity_profile(_net(), (_IMG, _Y))
_W = torch.randn(3, 5, generator=_G)
_S = (torch.rand(4, 5, generator=_G) > 0.5).float()


def _same_as(ref: torch.Tensor):
    return lambda r: isinstance(r, torch.Tensor) and torch.equal(r, ref)


def _shape_of(ref: torch.Tensor):
    return lambda r: isinstance(r, torch.Tensor) and r.shape == ref.shape and not r.is_meta


def _meta_like(ref: torch.Tensor):
    return lambda r: isinstance(r, torch.Tensor) and r.is_meta and r.shape == ref.shape


def _nan_in_nan_out(r: Any) -> bool:
    return has_nan(r)


def _empty(r: Any) -> bool:
    return isinstance(r, torch.Tensor) and r.numel() == 0


ROWS: list[Row] = [
    # -- neurons -------------------------------------------------------------------------------
    (
        "surrogate_grad",
        "u",
        tensor_bad(
            _X,
            dtypes=(torch.float16, torch.float32, torch.float64),
            docs={
                "nan": _nan_in_nan_out,
                "empty": _empty,
                "inf": lambda r: bool(torch.isfinite(r).all()),
                "ndim:0": _shape_of(_X[0, 0]),
                "ndim:+1": _shape_of(_X[None]),
                "device:meta": _meta_like(_X),
            },
        ),
        lambda v: snn.surrogate_grad(v),
    ),
    ("surrogate_grad", "surrogate", CHOICE, lambda v: snn.surrogate_grad(_X, v)),
    (
        "surrogate_grad",
        "alpha",
        [a for a in POSITIVE if a is not None],
        lambda v: snn.surrogate_grad(_X, "atan", v),
    ),
    (
        "lif_multistep",
        "x_seq",
        [
            *tensor_bad(
                _X, dtypes=(torch.float16, torch.float32, torch.float64), skip=("ndim:+1",)
            ),
            Doc(noncontiguous(_X), _same_as(snn.lif_multistep(_X)), "noncontig"),
        ],
        lambda v: snn.lif_multistep(v),
    ),
    ("lif_multistep", "tau", [*POSITIVE, 0.5], lambda v: snn.lif_multistep(_X, tau=v)),
    ("lif_multistep", "v_threshold", REAL, lambda v: snn.lif_multistep(_X, v_threshold=v)),
    (
        "lif_multistep",
        "v_reset",
        [x for x in REAL if x is not None] + [1.0, 5.0],
        lambda v: snn.lif_multistep(_X, v_reset=v),
    ),
    ("lif_multistep", "surrogate", CHOICE, lambda v: snn.lif_multistep(_X, surrogate=v)),
    (
        "lif_multistep",
        "alpha",
        [a for a in POSITIVE if a is not None],
        lambda v: snn.lif_multistep(_X, alpha=v),
    ),
    ("lif_multistep", "detach_reset", FLAG, lambda v: snn.lif_multistep(_X, detach_reset=v)),
    ("lif_multistep", "decay_input", FLAG, lambda v: snn.lif_multistep(_X, decay_input=v)),
    (
        "lif_multistep",
        "v_init",
        [x for x in REAL if x is not None]
        + [
            Named(torch.zeros(5), "shape(5)"),
            Named(torch.zeros(4, dtype=torch.int64), "int"),
            Named(torch.full((4,), math.nan), "nan"),
            Named(torch.zeros(4, device="meta"), "meta"),
        ],
        lambda v: snn.lif_multistep(_X, v_init=v),
    ),
    ("lif_multistep", "return_membrane", FLAG, lambda v: snn.lif_multistep(_X, return_membrane=v)),
    (
        "lif_multistep",
        "backend",
        ["gpu", 3, "", "CUDA "],
        lambda v: snn.lif_multistep(_X, backend=v),
    ),
    ("LIFNeuron", "tau", [*POSITIVE, 0.5], lambda v: snn.LIFNeuron(tau=v)),
    ("LIFNeuron", "v_threshold", REAL, lambda v: snn.LIFNeuron(v_threshold=v)),
    ("LIFNeuron", "v_reset", [1.0, math.nan, "0"], lambda v: snn.LIFNeuron(v_reset=v)),
    ("LIFNeuron", "surrogate", CHOICE, lambda v: snn.LIFNeuron(surrogate=v)),
    ("LIFNeuron", "v_init", [x for x in REAL if x is not None], lambda v: snn.LIFNeuron(v_init=v)),
    ("LIFNeuron", "record", FLAG, lambda v: snn.LIFNeuron(record=v)),
    (
        "LIFNeuron.forward",
        "x_seq",
        [
            *NOT_A_TENSOR,
            Named(_X.long(), "int"),
            Named(_X[:0], "empty"),
            Named(torch.tensor(1.0), "0-d"),
        ],
        lambda v: snn.LIFNeuron()(v),
    ),
    ("IFNeuron", "v_threshold", REAL, lambda v: snn.IFNeuron(v_threshold=v)),
    ("IFNeuron", "v_reset", [1.0, math.nan, "0"], lambda v: snn.IFNeuron(v_reset=v)),
    ("IFNeuron", "alpha", [a for a in POSITIVE if a is not None], lambda v: snn.IFNeuron(alpha=v)),
    ("IFNeuron", "record", FLAG, lambda v: snn.IFNeuron(record=v)),
    # -- encoders and networks -----------------------------------------------------------------
    (
        "rate_encode",
        "x",
        tensor_bad(
            _X,
            dtypes=(torch.float16, torch.float32, torch.float64),
            skip=("ndim:0", "ndim:+1", "empty"),
        ),
        lambda v: snn.rate_encode(v, 2),
    ),
    ("rate_encode", "steps", ints(1), lambda v: snn.rate_encode(_X, v)),
    ("rate_encode", "generator", GENERATOR, lambda v: snn.rate_encode(_X, 2, v)),
    (
        "direct_encode",
        "x",
        [t for t in NOT_A_TENSOR] + [Doc(_X.clone().fill_(math.nan), _nan_in_nan_out, "nan")],
        lambda v: snn.direct_encode(v, 2),
    ),
    ("direct_encode", "steps", ints(1), lambda v: snn.direct_encode(_X, v)),
    (
        "spiking_mlp",
        "sizes",
        [
            None,
            16,
            "16",
            (),
            (16,),
            (16, 0),
            (16, -2),
            (16, True),
            (16, 2.5),
            (16, 2**70),
            [16, None],
        ],
        lambda v: snn.spiking_mlp(v),
    ),
    ("spiking_mlp", "steps", ints(1), lambda v: snn.spiking_mlp((4, 2), steps=v)),
    ("spiking_mlp", "encoder", CHOICE, lambda v: snn.spiking_mlp((4, 2), encoder=v)),
    ("spiking_mlp", "readout", CHOICE, lambda v: snn.spiking_mlp((4, 2), readout=v)),
    ("spiking_mlp", "seed", SEED, lambda v: snn.spiking_mlp((4, 2), seed=v)),
    ("spiking_mlp", "tau", [0.5, math.nan, "2"], lambda v: snn.spiking_mlp((4, 2, 2), tau=v)),
    ("spiking_mlp", "taux", [2.0], lambda v: snn.spiking_mlp((4, 2, 2), taux=v)),
    (
        "spiking_cnn",
        "channels",
        [None, 4, "4", (0,), (-1,), (True,), (2.5,), (2**70,)],
        lambda v: snn.spiking_cnn(v),
    ),
    ("spiking_cnn", "image_size", [*ints(1), 1], lambda v: snn.spiking_cnn((2,), image_size=v)),
    ("spiking_cnn", "in_channels", ints(1), lambda v: snn.spiking_cnn((2,), in_channels=v)),
    ("spiking_cnn", "classes", ints(1), lambda v: snn.spiking_cnn((2,), classes=v)),
    ("spiking_cnn", "readout", CHOICE, lambda v: snn.spiking_cnn((2,), readout=v)),
    ("spiking_cnn", "seed", SEED, lambda v: snn.spiking_cnn((2,), seed=v)),
    (
        "SpikingNet",
        "body",
        [None, "body", torch.nn.Linear(2, 2), [torch.nn.Linear(2, 2)]],
        lambda v: snn.SpikingNet(v),
    ),
    ("SpikingNet", "steps", ints(1), lambda v: snn.SpikingNet(torch.nn.Sequential(), v)),
    ("SpikingNet", "encoder", CHOICE, lambda v: snn.SpikingNet(torch.nn.Sequential(), encoder=v)),
    ("SpikingNet", "seed", SEED, lambda v: snn.SpikingNet(torch.nn.Sequential(), seed=v)),
    (
        "SpikingNet.forward",
        "x",
        [
            *NOT_A_TENSOR,
            Named(_IMG.long(), "int"),
            Named(_IMG[:0], "empty"),
            Named(torch.rand(5, 1, 3, 3), "shape"),
            Named(torch.tensor(1.0), "0-d"),
        ],
        lambda v: _net()(v),
    ),
    (
        "evaluate",
        "model",
        [None, "net", torch.nn.Linear(16, 2)],
        lambda v: snn.evaluate(v, _IMG, _Y),
    ),
    (
        "evaluate",
        "x",
        [
            *NOT_A_TENSOR,
            Named(_IMG[:0], "empty"),
            Named(_IMG[:3], "len 3"),
            Named(_IMG.long(), "int"),
        ],
        lambda v: snn.evaluate(_net(), v, _Y),
    ),
    (
        "evaluate",
        "y",
        [
            None,
            [0, 1],
            Named(_Y[:3], "len 3"),
            Named(_Y.float(), "float"),
            Named(_Y.unsqueeze(1), "2-d"),
        ],
        lambda v: snn.evaluate(_net(), _IMG, v),
    ),
    ("evaluate", "batch_size", ints(1, huge=False), lambda v: snn.evaluate(_net(), _IMG, _Y, v)),
    (
        "train_bptt",
        "model",
        [None, torch.nn.Linear(16, 2)],
        lambda v: snn.train_bptt(v, _IMG, _Y, epochs=1, progress=False),
    ),
    (
        "train_bptt",
        "x_train",
        [
            *NOT_A_TENSOR,
            Named(_IMG[:0], "empty"),
            Named(_IMG[:3], "len 3"),
            Named(torch.full_like(_IMG, math.nan), "nan"),
        ],
        lambda v: snn.train_bptt(_net(), v, _Y, epochs=1, progress=False),
    ),
    (
        "train_bptt",
        "y_train",
        [
            None,
            Named(_Y[:3], "len 3"),
            Named(_Y.float(), "float"),
            Named(_Y + 5, "label 6 of 2 classes"),
            Named(_Y - 2, "negative"),
        ],
        lambda v: snn.train_bptt(_net(), _IMG, v, epochs=1, progress=False),
    ),
    (
        "train_bptt",
        "x_test",
        ["x", Named(_IMG[:3], "len 3")],
        lambda v: snn.train_bptt(_net(), _IMG, _Y, v, _Y, epochs=1, progress=False),
    ),
    (
        "train_bptt",
        "y_test",
        [Named(_Y[:3], "len 3"), Named(None, "None with x_test")],
        lambda v: snn.train_bptt(_net(), _IMG, _Y, _IMG, v, epochs=1, progress=False),
    ),
    (
        "train_bptt",
        "epochs",
        ints(1, huge=False),
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=v, progress=False),
    ),
    (
        "train_bptt",
        "lr",
        POSITIVE,
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=1, lr=v, progress=False),
    ),
    (
        "train_bptt",
        "batch_size",
        ints(1, huge=False),
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=1, batch_size=v, progress=False),
    ),
    (
        "train_bptt",
        "seed",
        SEED,
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=1, seed=v, progress=False),
    ),
    (
        "train_bptt",
        "progress",
        FLAG,
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=1, progress=v),
    ),
    (
        "train_bptt",
        "callback",
        ["cb", 3],
        lambda v: snn.train_bptt(_net(), _IMG, _Y, epochs=1, progress=False, callback=v),
    ),
    (
        "train_default",
        "quick",
        [1, "yes", 0.0],
        lambda v: snn.train_default(quick=v, progress=False),
    ),
    ("train_default", "seed", SEED, lambda v: snn.train_default(True, seed=v, progress=False)),
    ("train_default", "progress", FLAG, lambda v: snn.train_default(True, progress=v)),
    (
        "train_default",
        "device",
        # (None is valid: the toolkit's device policy; every bad value fails before training)
        ["gpu", 3, "cuda:99", "meta", *([] if torch.cuda.is_available() else ["cuda"])],
        lambda v: snn.train_default(True, progress=False, device=v),
    ),
    # -- profile and cost ----------------------------------------------------------------------
    (
        "sparsity_profile",
        "model",
        [None, torch.nn.Linear(16, 2), "net"],
        lambda v: snn.sparsity_profile(v, (_IMG, _Y)),
    ),
    (
        "sparsity_profile",
        "batch",
        [
            None,
            _IMG,
            (_IMG,),
            (_IMG, _Y, _Y),
            "xy",
            Named((_IMG[:0], _Y[:0]), "empty"),
            Named((_IMG, _Y[:3]), "len 3"),
            Named((_IMG, _Y.float()), "float labels"),
            Named((_IMG.long(), _Y), "int x"),
            Named((torch.full_like(_IMG, math.nan), _Y), "nan x"),
        ],
        lambda v: snn.sparsity_profile(_net(), v),
    ),
    (
        "sparsity_profile",
        "threshold",
        [*FRACTION, 1.0],
        lambda v: snn.sparsity_profile(_net(), (_IMG, _Y), v),
    ),
    ("h2learn_cost", "profile", [None, "p", {}], lambda v: snn.h2learn_cost(v)),
    ("h2learn_cost", "group", ints(1, 8), lambda v: snn.h2learn_cost(_PROFILE, v)),
    (
        "h2learn_cost",
        "batch",
        [
            *ints(1)[1:],
            Doc(
                None,
                lambda r: r.speedup == snn.h2learn_cost(_PROFILE, batch=_PROFILE.batch).speedup,
                "None: the profile's",
            ),
        ],
        lambda v: snn.h2learn_cost(_PROFILE, batch=v),
    ),
    (
        "h2learn_cost",
        "bytes_per_value",
        ints(1, 8),
        lambda v: snn.h2learn_cost(_PROFILE, bytes_per_value=v),
    ),
    ("h2learn_cost", "pipelined", FLAG, lambda v: snn.h2learn_cost(_PROFILE, pipelined=v)),
    (
        "h2learn_cost",
        "table",
        [
            "mac_pj",
            [("mac_pj", 1.0)],
            {"nope": 1.0},
            {"mac_pj": "a"},
            {"mac_pj": math.nan},
            {"mac_pj": -1.0},
            {"bytes_per_s": 0.0},
            {"baseline_macs_per_s": math.inf},
            {"baseline_utilization": 2.0},
            {"mac_pj": None},
            {"mac_pj": True},
        ],
        lambda v: snn.h2learn_cost(_PROFILE, table=v),
    ),
    ("h2learn_cost", "sparsity", CHOICE, lambda v: snn.h2learn_cost(_PROFILE, sparsity=v)),
    # -- LUT accumulation ----------------------------------------------------------------------
    ("lut_counts", "in_features", ints(1), lambda v: snn.lut_counts(v, 4)),
    ("lut_counts", "out_features", ints(1), lambda v: snn.lut_counts(4, v)),
    ("lut_counts", "group", ints(1, 8), lambda v: snn.lut_counts(4, 4, v)),
    ("lut_counts", "density", FRACTION, lambda v: snn.lut_counts(4, 4, density=v)),
    ("lut_counts", "samples", ints(1), lambda v: snn.lut_counts(4, 4, samples=v)),
    (
        "lut_table",
        "weight",
        tensor_bad(
            _W,
            dtypes=(torch.float16, torch.float32, torch.float64),
            docs={
                "nan": _nan_in_nan_out,
                "inf": _nan_in_nan_out,
                "device:meta": _meta_like(snn.lut_table(_W.to("meta"))),
            },
        ),
        lambda v: snn.lut_table(v),
    ),
    ("lut_table", "group", ints(1, 8), lambda v: snn.lut_table(_W, v)),
    (
        "lut_accumulate",
        "spikes",
        [
            *NOT_A_TENSOR,
            Named(_S * 2, "value 2"),
            Named(_S.to(torch.complex64), "complex"),
            Named(torch.full_like(_S, math.nan), "nan"),
            Named(_S[:, :4], "4 features"),
            Named(_S.to("meta"), "meta"),
            Named(torch.tensor(1.0), "0-d"),
        ],
        lambda v: snn.lut_accumulate(v, _W),
    ),
    (
        "lut_accumulate",
        "weight",
        [*NOT_A_TENSOR, Named(_W.long(), "int"), Named(_W[0], "1-d"), Named(_W.to("meta"), "meta")],
        lambda v: snn.lut_accumulate(_S, v),
    ),
    ("lut_accumulate", "group", ints(1, 8), lambda v: snn.lut_accumulate(_S, _W, v)),
    (
        "lut_accumulate",
        "return_counts",
        FLAG,
        lambda v: snn.lut_accumulate(_S, _W, return_counts=v),
    ),
]

CASES = cases(ROWS)

if __name__ == "__main__":
    main({"snn": CASES})
