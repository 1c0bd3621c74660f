r"""Per-block metrics across depth: :func:`profile` and :class:`Profile`.

For a chain of blocks :math:`J = J_L\cdots J_1`, the profile holds, for every block
:math:`i`: the second moment of its input and output (mean-field propagation, with the
squared mean ``c`` and the mean of :class:`~.stats.ForwardStats` carried along),
its own :math:`\phi(J_iJ_i^T)` and variance (block dynamical isometry asks
:math:`\approx 1` and :math:`\approx 0`), and the cumulative values for
:math:`J_i\cdots J_1` (free multiplicative convolution, see :mod:`toolkit.isometry.engine.free`;
residual blocks with batch statistics compose in the batch split of
:mod:`toolkit.isometry.engine.batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._checks import check_flag, check_int
from .batch import ChainMoments
from .blocks import Block, _check_block, check_q
from .stats import ForwardStats

__all__ = ["Profile", "profile"]


@dataclass(frozen=True)
class Profile:
    r"""Per-block metrics of a chain, as arrays with one entry per block; see :func:`profile`.

    Attributes
    ----------
    names : tuple of str
        The blocks' ``repr``.
    q_in, q_out : numpy.ndarray
        Second moment of each block's input and output (mean-field propagation).
    m1, variance, normalized_variance : numpy.ndarray
        :math:`\phi(J_iJ_i^T)`, :math:`m_2 - m_1^2` and :math:`m_2/m_1^2 - 1` of block ``i``.
    cumulative_m1, cumulative_variance, cumulative_normalized_variance : numpy.ndarray
        The same for the prefix :math:`J_i \cdots J_1`.
    c_in, mean_in : numpy.ndarray
        Squared per-unit mean and mean of each block's input (see :class:`ForwardStats`).
    """

    names: tuple[str, ...]
    q_in: np.ndarray
    q_out: np.ndarray
    m1: np.ndarray
    variance: np.ndarray
    normalized_variance: np.ndarray
    cumulative_m1: np.ndarray
    cumulative_variance: np.ndarray
    cumulative_normalized_variance: np.ndarray
    c_in: np.ndarray | None = None
    mean_in: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def depth(self) -> np.ndarray:
        """Block index ``1..L``."""
        return np.arange(1, len(self.names) + 1)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per block (for tables)."""
        keys = ["q_in", "q_out", "m1", "variance", "cumulative_m1", "cumulative_variance"]
        return [
            {"block": n, **{k: float(getattr(self, k)[i]) for k in keys}}
            for i, n in enumerate(self.names)
        ]


def _float(name: str, value: Any, block: Block) -> float:
    try:
        return float(value)
    except TypeError as err:
        raise TypeError(
            f"profile needs numeric parameters; {name} of {block!r} is {value!r}; "
            "substitute the symbols first"
        ) from err


def profile(block: Block, q: Any = 1.0, order: int = 2, flatten: bool = False) -> Profile:
    """Metrics of every block of ``block`` across depth.

    Parameters
    ----------
    block : Block
        Usually a :class:`Serial`; its items are the blocks (a nested ``repeat`` is expanded
        into its copies).
    q : float or ForwardStats
        Second moment of the chain's input, ``> 0`` (zero-mean), or its statistics.
    order : int
        Moments used internally (at least 2; the arrays report the first two).
    flatten : bool
        Expand nested chains down to single layers (a :class:`Parallel` or
        :class:`Residual` stays one item).

    Returns
    -------
    Profile

    Raises
    ------
    TypeError
        If a block has symbolic parameters (substitute numbers first).

    Examples
    --------
    >>> from toolkit.isometry import Linear, ReLU, Serial, repeat
    >>> p = profile(repeat(Serial([Linear(64, 64, gain=2**0.5), ReLU()]), 3))
    >>> p.cumulative_m1.round(6).tolist(), p.cumulative_variance.round(6).tolist()
    ([1.0, 1.0, 1.0], [2.0, 4.0, 6.0])
    """
    _check_block("block", block)
    order = max(2, check_int("order", order, 1))
    s: ForwardStats = check_q(q)
    items = block._items(check_flag("flatten", flatten))
    names, rows = [], []
    chain = ChainMoments(order)
    for item in items:
        m = [_float("moment", v, item) for v in item._moments_at(order, s)]
        s_out = item._forward(s)
        r = _float("ratio", item.ratio, item)
        chain.add(m, r, item._batch_split(order, s))
        cum = chain.moments()
        rows.append(
            [
                _float("q", s.q, item),
                _float("q", s_out.q, item),
                m[0],
                m[1] - m[0] ** 2,
                m[1] / m[0] ** 2 - 1,
                cum[0],
                cum[1] - cum[0] ** 2,
                cum[1] / cum[0] ** 2 - 1,
                _float("c", s.c, item),
                _float("mean", s.mean, item),
            ]
        )
        names.append(repr(item))
        s = s_out
    a = np.array(rows, dtype=float).reshape(-1, 10)
    return Profile(tuple(names), *[a[:, i] for i in range(10)])
