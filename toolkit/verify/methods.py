"""The bound methods as data: one record per method says what it computes.

Every place that behaves differently per method (the propagation engine, the memory estimate,
the explorer, the report) reads these records; nothing tests method names.

==============  ========  ==============  ===============  ===============
method          backward  forward linear  stops at         optimises
                passes    bounds          attention        slopes
==============  ========  ==============  ===============  ===============
``ibp``         no        no              no               no
``crown``       yes       no              no               no
``forward``     no        yes             no               no
``baf``         yes       yes             yes              no
``alpha-crown`` yes       no              no               yes
==============  ========  ==============  ===============  ===============

>>> METHOD_TABLE["baf"].forward_linear, METHOD_TABLE["baf"].stops_at_attention
(True, True)
>>> get_method("alpha-crown").optimizes_slopes
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .._checks import check_choice

__all__ = ["METHODS", "METHOD_TABLE", "BoundMethod", "MethodName", "get_method"]

MethodName = Literal["ibp", "crown", "forward", "baf", "alpha-crown"]


@dataclass(frozen=True)
class BoundMethod:
    """What one bound method computes.

    Attributes
    ----------
    name : MethodName
        The name the public API takes (``method=``).
    label : str
        Human-readable name.
    backward : bool
        Bounds of the nodes that relaxations need (and of the output) come from backward
        passes (back-substitution of linear bounds to the input, CROWN).
    forward_linear : bool
        Linear lower/upper functions of the perturbation are carried forward through every
        node (Shi et al.'s forward process).
    stops_at_attention : bool
        Backward passes stop at the attention outputs and substitute their forward linear
        bounds there (backward-forward); the attention sub-blocks get forward bounds only.
    optimizes_slopes : bool
        The slopes of the elementwise planes in the final back-substitution are optimised for
        the output (alpha-CROWN); takes seconds, so the explorer computes it on demand.
    color : str
        The colour of the method in the explorer and the report.
    summary : str
        One line on what the method does.
    """

    name: MethodName
    label: str
    backward: bool
    forward_linear: bool
    stops_at_attention: bool
    optimizes_slopes: bool
    color: str
    summary: str


#: name -> record, in the order the explorer and the report list the methods
METHOD_TABLE: dict[MethodName, BoundMethod] = {
    m.name: m
    for m in (
        BoundMethod(
            "ibp",
            "IBP",
            backward=False,
            forward_linear=False,
            stops_at_attention=False,
            optimizes_slopes=False,
            color="#7f7f7f",
            summary="interval bounds, node by node",
        ),
        BoundMethod(
            "crown",
            "CROWN",
            backward=True,
            forward_linear=False,
            stops_at_attention=False,
            optimizes_slopes=False,
            color="#1f77b4",
            summary="backward linear bounds (back-substitution to the input)",
        ),
        BoundMethod(
            "forward",
            "forward",
            backward=False,
            forward_linear=True,
            stops_at_attention=False,
            optimizes_slopes=False,
            color="#ff7f0e",
            summary="forward linear bounds (Shi et al.)",
        ),
        BoundMethod(
            "baf",
            "backward-forward",
            backward=True,
            forward_linear=True,
            stops_at_attention=True,
            optimizes_slopes=False,
            color="#2ca02c",
            summary="forward bounds in attention, backward passes elsewhere (Shi et al.)",
        ),
        BoundMethod(
            "alpha-crown",
            "alpha-CROWN",
            backward=True,
            forward_linear=False,
            stops_at_attention=False,
            optimizes_slopes=True,
            color="#9467bd",
            summary="CROWN with the final planes' slopes optimised (Xu et al.)",
        ),
    )
}
#: the method names, in table order
METHODS: tuple[MethodName, ...] = get_args(MethodName)
assert tuple(METHOD_TABLE) == METHODS


def get_method(method: object) -> BoundMethod:
    """The record of ``method`` (a :data:`MethodName`), else a ValueError listing the names.

    Examples
    --------
    >>> get_method("crown").backward
    True
    >>> get_method("lp")
    Traceback (most recent call last):
    ...
    ValueError: method must be one of ('ibp', 'crown', 'forward', 'baf', 'alpha-crown'), got method='lp'
    """  # noqa: E501
    if isinstance(method, BoundMethod):
        return method
    return METHOD_TABLE[check_choice("method", method, METHODS)]
