"""Relaxations of the operators of the verification graph, one file per operator family.

See :mod:`._base` for the op protocol (exact value, IBP interval, CROWN backward step,
forward linear step).
"""

from ._base import SLACK, Elementwise, LinearBounds, Op, SmoothElementwise, offset_range
from .exp import Exp
from .gelu import GELU
from .layernorm import add_layernorm
from .linear import Add, Center, Linear, Rearrange, Scale, TokenMean
from .product import MatMul, Mul, Square, mccormick
from .reciprocal import Reciprocal
from .relu import ReLU
from .softmax import Shift, add_softmax
from .sqrt import Rsqrt, Sqrt
from .tanh import Tanh

__all__ = [
    "GELU",
    "SLACK",
    "Add",
    "Center",
    "Elementwise",
    "Exp",
    "Linear",
    "LinearBounds",
    "MatMul",
    "Mul",
    "Op",
    "ReLU",
    "Rearrange",
    "Reciprocal",
    "Rsqrt",
    "Scale",
    "Shift",
    "SmoothElementwise",
    "Sqrt",
    "Square",
    "Tanh",
    "TokenMean",
    "add_layernorm",
    "add_softmax",
    "mccormick",
    "offset_range",
]
