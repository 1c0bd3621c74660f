r"""Blocks and their composition: :class:`Serial`, :class:`Parallel`, :class:`Residual`, ...

Every block knows, for an input of per-coordinate second moment :math:`q` (and, in
general, the squared mean ``c`` and mean of :class:`~.stats.ForwardStats`),

* the moments of :math:`JJ^T` (:meth:`Block.moments`), normalized by the block's
  **output** width, and
* the output statistics (:meth:`Block.propagate_stats`; :meth:`Block.propagate_q` is their
  second moment), mean-field.

Composition rules (Chen et al. 2020, Theorems 4.1-4.3, in free-probability form;
the factors are assumed asymptotically free, which holds when they are separated
by independent rotation-invariant weights):

* :class:`Serial` -- :math:`J = J_L\cdots J_1`: S-transforms multiply,
  :math:`S(w) = \prod_i S_i(w\,n_L/n_i)` (:math:`n_i` the widths). For square
  blocks :math:`m_1` multiplies and the normalized variance :math:`m_2/m_1^2-1` adds.
* :class:`Parallel` -- :math:`J = \sum_i J_i`: valid when at most one branch is
  not R-diagonal (a branch containing a Gaussian or orthogonal weight layer is
  R-diagonal; the identity is the usual exception). Then cross terms vanish,
  :math:`m_1 = \sum_i m_{1,i}`, and all moments follow from free additive
  convolution of the symmetrized singular-value laws (Haagerup & Larsen 2000).
  The output second moments add, plus the cross terms of the branch means
  :math:`\sum_{i\ne k}\bar a_i\bar a_k` (the branches' fluctuations are uncorrelated).
* :class:`Residual` -- :math:`J = I + \alpha J_b`, a :class:`Parallel` of the identity
  and the scaled branch: :math:`m_1 = 1 + \alpha^2 m_{1,b}`,
  :math:`\mathrm{Var} = 2\alpha^2 m_{1,b} + \alpha^4 \mathrm{Var}_b`; the stream's
  second moment gains :math:`\alpha^2 q_b + 2\alpha\,\bar a\,\bar a_b` (the mean a ReLU
  branch adds meets the mean already in the stream).
* :class:`Concat` -- :math:`J = [J_1; J_2; \dots]`: :math:`J^TJ = \sum_i J_i^TJ_i` is a
  free sum in the input space.

With batch norm on batch statistics a residual block leaves a common shift of the batch to
its skip connection alone; a :class:`Serial` chain of such blocks composes in the
(batch mean, batch-mean-free) split of :mod:`.batch` instead of block by block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp
from tqdm.auto import tqdm

from ..._checks import check_int, check_real, is_symbolic
from . import free
from ._series import coerce, is_exact, num
from .batch import BatchSplit, ChainMoments, chain_split
from .moments import Moments
from .spectra import AtomLaw, ProductLaw, SumLaw
from .stats import ForwardStats, as_stats, is_zero

__all__ = [
    "Block",
    "Concat",
    "Identity",
    "Parallel",
    "Repeat",
    "Residual",
    "Scale",
    "Serial",
    "check_q",
    "repeat",
]


class Block:
    """Base class of all blocks: a map whose Jacobian moments the engine computes.

    Subclasses implement ``_jacobian_moments(order, q)`` and, if the map changes the
    second moment of its input, ``_propagate_q(q)``; see the module docstring for how blocks
    compose.

    Attributes
    ----------
    r_diagonal : bool
        The Jacobian is R-diagonal (contains a rotation-invariant random weight factor).
    """

    #: the Jacobian is R-diagonal (contains a rotation-invariant random weight factor)
    r_diagonal: bool = False
    #: a linear map that acts on every sample of a batch alike (keeps the batch split)
    _batchwise_linear: bool = False

    @property
    def ratio(self) -> Any:
        """Output width / input width (1 for shape-preserving blocks)."""
        return 1

    def moments(self, order: int = 2, q: Any = 1.0) -> Moments:
        r"""Moments :math:`m_k = \phi((JJ^T)^k)`, ``k = 1..order``, at input second moment ``q``.

        Parameters
        ----------
        order : int
            Number of moments, ``>= 1``.
        q : number or sympy expression
            Second moment of the block's input, ``> 0`` (a symbol is assumed positive).

        Returns
        -------
        Moments

        Examples
        --------
        >>> from toolkit.isometry import ReLU
        >>> ReLU().moments(order=3)
        Moments(m1=1/2, m2=1/2, m3=1/2, variance=1/4)
        """
        order = check_int("order", order, 1)
        return Moments(*self._moments_at(order, check_q(q)))

    def propagate_q(self, q: Any = 1.0) -> Any:
        """Per-coordinate second moment of the output for input second moment ``q``.

        Parameters
        ----------
        q : number, sympy expression or ForwardStats
            Second moment of the block's input, ``> 0`` (a number is a zero-mean input).

        Returns
        -------
        number or sympy expression

        Examples
        --------
        >>> from toolkit.isometry import ReLU
        >>> ReLU().propagate_q(2)
        1
        """
        return self._forward_q(check_q(q))

    def propagate_stats(self, q: Any = 1.0) -> ForwardStats:
        """Second moment, squared mean and mean of the output (see :class:`ForwardStats`).

        Parameters
        ----------
        q : number, sympy expression or ForwardStats
            The input's statistics; a number is the second moment of a zero-mean input.

        Returns
        -------
        ForwardStats

        Examples
        --------
        >>> from toolkit.isometry import ReLU
        >>> s = ReLU().propagate_stats(1)       # a ReLU output has mean 1/sqrt(2 pi)
        >>> s.q, s.mean
        (1/2, sqrt(2)/(2*sqrt(pi)))
        """
        return self._forward(check_q(q))

    # -- to implement ----------------------------------------------------------------
    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        raise NotImplementedError

    def _propagate_q(self, q: Any) -> Any:
        return q

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        """Moments for input statistics ``s``; by default they depend on ``q`` alone."""
        return self._jacobian_moments(order, s.q)

    def _forward(self, s: ForwardStats) -> ForwardStats:
        """Output statistics; by default the mean structure scales with ``q``.

        (A block that declares only ``_propagate_q`` is taken to map the per-unit means like
        the fluctuations: ``c`` scales as ``q`` and ``mean`` as its square root.)
        """
        q_out = self._propagate_q(s.q)
        if s.mean_free:
            return ForwardStats(q_out)
        ratio = q_out / s.q
        root = sp.sqrt(ratio) if isinstance(ratio, sp.Basic) else ratio**0.5
        return ForwardStats(q_out, s.c * ratio, s.mean * root)

    def _forward_q(self, s: ForwardStats) -> Any:
        """The output's second moment alone (a repeat may find it faster than all of them)."""
        return self._forward(s).q

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        """The block in the (batch mean, batch-mean-free) split of :mod:`.batch`, or None.

        A linear map that acts on every sample alike (``_batchwise_linear``) keeps both
        parts: a split without a batch size, which continues what batch norm started.
        """
        if not self._batchwise_linear:
            return None
        try:
            if float(self.ratio) != 1:
                return None
            m = [float(v) for v in self._moments_at(order, s)]
        except TypeError:  # symbolic: the split is numeric
            return None
        return BatchSplit(None, m, 0.0, m[0])

    def _spectral_law(self, q: float) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no spectral law yet")

    def _law(self, s: ForwardStats) -> Any:
        """The spectral law at input statistics ``s`` (by default it depends on ``q`` alone)."""
        return self._spectral_law(float(s.q))

    def _items(self, flatten: bool) -> list[Block]:
        return [self]

    def _widths(self) -> tuple[Width, Width]:
        """``(input, output)`` widths as ``(kind, size)``, or None where the block takes any."""
        return None, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: a width a block requires or produces: ("features", n) for dense layers, ("channels", c)
#: for convolutions; None when the block adapts to its input
Width = tuple[str, int] | None


def _chain_widths(name: str, blocks: Sequence[Block]) -> tuple[Width, Width]:
    """Check that consecutive widths chain; return the chain's ``(input, output)`` widths.

    Blocks without widths (activations, normalizations) pass the width on when they preserve
    it (ratio 1) and forget it otherwise.
    """
    first: Width = None
    state: Width = None
    leading = True  # every block so far took any width and preserved it
    for i, b in enumerate(blocks):
        w_in, w_out = b._widths()
        if w_in is not None and state is not None and w_in[0] == state[0] and w_in[1] != state[1]:
            raise ValueError(
                f"{name}[{i}] = {b!r} takes {w_in[0]} of width {w_in[1]}, but the blocks "
                f"before it output width {state[1]}: consecutive widths must chain"
            )
        if leading and w_in is not None:
            first = w_in
        keeps = _same(b.ratio, 1)
        if w_in is not None or w_out is not None or not keeps:
            leading = False
        if w_out is not None:
            state = w_out
        elif not keeps:
            state = None
    return first, state


def check_q(q: Any) -> ForwardStats:
    """The input statistics: ``q > 0`` (a symbol is assumed positive) as a zero-mean input.

    ``q`` is kept as given rather than converted to float: an exact ``q`` keeps the moments
    exact. A :class:`ForwardStats` passes through.
    """
    return as_stats(q)


def _cross(means: Sequence[Any]) -> Any:
    r""":math:`\sum_{i \ne k} a_i a_k`: the cross terms of summed branch means."""
    nonzero = [a for a in means if not is_zero(a)]
    if len(nonzero) < 2:
        return 0
    total = sum(nonzero)
    return total**2 - sum(a**2 for a in nonzero)


def _check_block(name: str, value: Any) -> Block:
    if not isinstance(value, Block):
        raise TypeError(f"{name} must be a toolkit.isometry Block, got {value!r}")
    return value


def _check_blocks(name: str, blocks: Any) -> list[Block]:
    if isinstance(blocks, Block) or not isinstance(blocks, Sequence):
        raise TypeError(f"{name} must be a list of Blocks, got {blocks!r}")
    if not blocks:
        raise ValueError(f"{name} must hold at least one Block, got {blocks!r}")
    return [_check_block(f"{name}[{i}]", b) for i, b in enumerate(blocks)]


def _same_stats(a: ForwardStats, b: ForwardStats) -> bool:
    return _same(a.q, b.q) and _same(a.c, b.c) and _same(a.mean, b.mean)


def _same(a: Any, b: Any) -> bool:
    if is_symbolic(a) or is_symbolic(b):
        return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0
    return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))


class Identity(Block):
    """The identity map: :math:`JJ^T = I`, all moments 1, ``q`` unchanged (skip connections).

    Examples
    --------
    >>> Identity().moments()
    Moments(m1=1, m2=1, variance=0)
    """

    _batchwise_linear = True

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return [sp.Integer(1)] * order

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([1.0], [1.0])

    def _forward(self, s: ForwardStats) -> ForwardStats:
        return s


class Scale(Block):
    r"""Multiplication by a constant: :math:`m_k = \text{factor}^{2k}`, ``q -> factor^2 q``.

    Parameters
    ----------
    factor : number or sympy expression
        The constant.

    Examples
    --------
    >>> Scale(3).moments()
    Moments(m1=9, m2=81, variance=0)
    """

    _batchwise_linear = True

    def __init__(self, factor: Any) -> None:
        check_real("factor", factor, symbolic=True)
        self.factor = factor

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        (c,) = coerce([self.factor])
        return [c ** (2 * k) for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        return self.factor**2 * q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        f = self.factor
        return ForwardStats(f**2 * s.q, f**2 * s.c, f * s.mean)

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([float(self.factor) ** 2], [1.0])

    def __repr__(self) -> str:
        return f"Scale({self.factor!r})"


def compose(
    seqs: Sequence[list[Any]], ratios: Sequence[Any], splits: Sequence[Any], order: int
) -> list[Any]:
    """Moments of the chain ``J_n ... J_1`` from its blocks' moments, ratios and batch splits.

    Without batch splits the blocks compose freely (exact when the moments are); runs of
    batch-split blocks compose in the split of :mod:`.batch` (numeric).
    """
    symbolic = any(is_symbolic(v) for seq in seqs for v in seq)
    if symbolic or all(split is None or split.batch is None for split in splits):
        # (the batch split is numeric: symbolic moments compose block by block)
        exact = is_exact([v for seq in seqs for v in seq])
        return free._product(
            [coerce(seq, exact) for seq in seqs], coerce(list(ratios), exact), order
        )
    chain = ChainMoments(order)
    for seq, r, split in zip(seqs, ratios, splits):
        chain.add([float(v) for v in seq], float(r), split)
    return chain.moments()


class Serial(Block):
    """Blocks applied one after the other (``blocks[0]`` first); S-transforms multiply.

    Parameters
    ----------
    blocks : sequence of Block
        In the order they are applied; each sees the second moment its predecessor outputs.
        Consecutive widths must chain (``Linear(4, 8)`` can be followed by ``Linear(8, n)``
        but not by ``Linear(3, n)``).

    Raises
    ------
    TypeError, ValueError
        For a non-block entry, or widths that do not chain.

    Examples
    --------
    >>> from toolkit.isometry import Linear, ReLU
    >>> Serial([Linear(100, 100, gain=2**0.5), ReLU()]).moments()
    Moments(m1=1, m2=3, variance=2)
    """

    def __init__(self, blocks: Sequence[Block]) -> None:
        self.blocks = _check_blocks("blocks", blocks)
        self._chain = _chain_widths("blocks", self.blocks)
        self.r_diagonal = any(b.r_diagonal for b in self.blocks)

    def _widths(self) -> tuple[Width, Width]:
        return self._chain

    @property
    def ratio(self) -> Any:
        r = sp.Integer(1)
        for b in self.blocks:
            r = r * sp.sympify(b.ratio)
        return r

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return self._moments_at(order, ForwardStats(q))

    def _propagate_q(self, q: Any) -> Any:
        return self._forward(ForwardStats(q)).q

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        seqs, ratios, splits = [], [], []
        for i, b in enumerate(self.blocks):
            seqs.append(b._moments_at(order, s))
            ratios.append(b.ratio)
            splits.append(b._batch_split(order, s))
            if i + 1 < len(self.blocks):  # (the last block's output is not needed)
                s = b._forward(s)
        return compose(seqs, ratios, splits, order)

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        splits = []
        for b in self.blocks:
            split = b._batch_split(order, s)
            if split is None:
                return None
            splits.append(split)
            s = b._forward(s)
        return chain_split(splits, order)

    def _forward(self, s: ForwardStats) -> ForwardStats:
        for b in self.blocks:
            s = b._forward(s)
        return s

    def _spectral_law(self, q: float) -> Any:
        return self._law(ForwardStats(q))

    def _law(self, s: ForwardStats) -> Any:
        items = []
        for b in self.blocks:
            items.append((b._law(s), float(b.ratio)))
            s = b._forward(s).numeric()
        return ProductLaw(items)

    def _items(self, flatten: bool) -> list[Block]:
        out: list[Block] = []
        for b in self.blocks:
            if flatten or isinstance(b, Repeat):
                out.extend(b._items(flatten))
            else:
                out.append(b)
        return out

    def __repr__(self) -> str:
        return f"Serial({self.blocks!r})"


def _check_branches(name: str, branches: list[Block], same_ratio: bool) -> None:
    others = [b for b in branches if not b.r_diagonal]
    if len(others) > 1:
        raise ValueError(
            f"{name}: at most one branch may lack a random weight layer (R-diagonal Jacobian) "
            f"for the free-sum formulas; got non-R-diagonal branches {others!r}"
        )
    if same_ratio:
        r0 = branches[0].ratio
        for b in branches[1:]:
            if not _same(b.ratio, r0):
                raise ValueError(
                    f"{name}: all branches need the same output/input width ratio, "
                    f"got {b.ratio} and {r0}"
                )


def _shared_input(name: str, branches: list[Block]) -> Width:
    """The input width the branches agree on (they all read one input)."""
    shared: Width = None
    for i, b in enumerate(branches):
        w = b._widths()[0]
        if w is None:
            continue
        if shared is not None and w[0] == shared[0] and w[1] != shared[1]:
            raise ValueError(
                f"{name}[{i}] = {b!r} takes {w[0]} of width {w[1]}, but an earlier branch "
                f"takes width {shared[1]}: branches share one input"
            )
        shared = shared or w
    return shared


class Parallel(Block):
    r"""Sum of branches :math:`J = \sum_i J_i` (same input, outputs added).

    Assumes free branches with at most one non-R-diagonal; see the module docstring.

    Parameters
    ----------
    branches : sequence of Block
        With equal width ratios.

    Examples
    --------
    >>> from toolkit.isometry import Linear
    >>> Parallel([Identity(), Linear(50, 50, gain=1)]).moments()
    Moments(m1=2, m2=7, variance=3)
    """

    def __init__(self, branches: Sequence[Block]) -> None:
        self.branches = _check_blocks("branches", branches)
        _check_branches("Parallel", self.branches, same_ratio=True)
        self._shared = _shared_input("branches", self.branches)
        self.r_diagonal = all(b.r_diagonal for b in self.branches)

    def _widths(self) -> tuple[Width, Width]:
        outs = [b._widths()[1] for b in self.branches]
        return self._shared, next((w for w in outs if w is not None), None)

    @property
    def ratio(self) -> Any:
        return self.branches[0].ratio

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return self._moments_at(order, ForwardStats(q))

    def _propagate_q(self, q: Any) -> Any:
        return self._forward(ForwardStats(q)).q

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        return free.r_diagonal_sum(*[b._moments_at(order, s) for b in self.branches])

    def _forward(self, s: ForwardStats) -> ForwardStats:
        # branch means meet in every unit; their fluctuations are independent (weights)
        outs = [b._forward(s) for b in self.branches]
        cross = _cross([o.mean for o in outs])
        return ForwardStats(
            sum(o.q for o in outs) + cross,
            sum(o.c for o in outs) + cross,
            sum(o.mean for o in outs),
        )

    def _spectral_law(self, q: float) -> Any:
        return self._law(ForwardStats(q))

    def _law(self, s: ForwardStats) -> Any:
        return SumLaw([b._law(s) for b in self.branches])

    def __repr__(self) -> str:
        return f"Parallel({self.branches!r})"


class Residual(Block):
    r"""Residual block :math:`y = x + \text{scale}\cdot F(x)`, :math:`J = I + \text{scale}\,J_F`.

    :math:`m_1 = 1 + s^2 m_{1,F}`, :math:`\mathrm{Var} = 2 s^2 m_{1,F} + s^4 \mathrm{Var}_F`,
    ``q -> q + s^2 q_F``.

    Parameters
    ----------
    branch : Block
        :math:`F`: shape preserving and R-diagonal (it contains a weight layer).
    scale : number or sympy expression
        :math:`s`.

    Examples
    --------
    >>> from toolkit.isometry import Linear
    >>> Residual(Linear(10, 10, gain=1), scale=sp.Rational(1, 2)).moments()
    Moments(m1=5/4, m2=17/8, variance=9/16)
    """

    def __init__(self, branch: Block, scale: Any = 1.0) -> None:
        self.branch = _check_block("branch", branch)
        check_real("scale", scale, symbolic=True)
        self.scale = scale
        if not branch.r_diagonal:
            raise ValueError(
                f"Residual: branch must contain a random weight layer (R-diagonal "
                f"Jacobian) for the free-sum formula, got branch={branch!r}"
            )
        if not _same(branch.ratio, 1):
            raise ValueError(f"Residual: branch must preserve the width, got ratio {branch.ratio}")

    def _widths(self) -> tuple[Width, Width]:
        w_in, w_out = self.branch._widths()
        return w_in or w_out, w_out or w_in

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return self._moments_at(order, ForwardStats(q))

    def _propagate_q(self, q: Any) -> Any:
        return self._forward(ForwardStats(q)).q

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        m = self.branch._moments_at(order, s)
        exact = is_exact([*m, self.scale])
        s2 = num(self.scale, exact) ** 2
        scaled = [v * s2 ** (k + 1) for k, v in enumerate(coerce(m, exact))]
        return free.r_diagonal_sum([num(1, exact)] * order, scaled)

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        branch = self.branch._batch_split(order, s)
        if branch is None or branch.batch is None:
            return None
        try:
            s2 = float(self.scale) ** 2
        except TypeError:  # symbolic: the split is numeric
            return None
        # the skip connection carries the batch mean; the branch adds freely on each part
        kept = [v * s2**k for k, v in enumerate(branch.perp, start=1)]
        perp = free.r_diagonal_sum([1.0] * order, kept)
        return BatchSplit(
            branch.batch, [float(v) for v in perp], s2 * branch.alpha, 1 + s2 * branch.keep
        )

    def _forward(self, s: ForwardStats) -> ForwardStats:
        # x + a F(x): the branch's fluctuations (behind a weight layer) are independent of
        # x's, but every unit of F has the same mean on average, which meets x's mean
        f, a = self.branch._forward(s), self.scale
        cross = 0 if is_zero(s.mean) or is_zero(f.mean) else 2 * a * s.mean * f.mean
        return ForwardStats(s.q + a**2 * f.q + cross, s.c + a**2 * f.c + cross, s.mean + a * f.mean)

    def _spectral_law(self, q: float) -> Any:
        return self._law(ForwardStats(q))

    def _law(self, s: ForwardStats) -> Any:
        s2 = float(self.scale) ** 2
        if s2 == 0:
            return AtomLaw([1.0], [1.0])
        scaled = ProductLaw([(self.branch._law(s), 1.0), (AtomLaw([s2], [1.0]), 1.0)])
        return SumLaw([AtomLaw([1.0], [1.0]), scaled])

    def __repr__(self) -> str:
        return f"Residual({self.branch!r}, scale={self.scale!r})"


class Concat(Block):
    r"""Concatenation of branch outputs, :math:`J = [J_1; \dots; J_n]`.

    With ratios :math:`r_i = d_i/d_\text{in}` and :math:`R = \sum_i r_i`, the laws of
    :math:`J_i^TJ_i` (moments :math:`r_i m_k^{(i)}` in the input normalization) add
    freely; the result is renormalized by :math:`R`. So :math:`m_1 = \sum_i r_i m_{1,i}/R`,
    ``q -> sum_i r_i q_i / R``. Needs at most one non-R-diagonal branch.

    Parameters
    ----------
    branches : sequence of Block
        Sharing one input.

    Examples
    --------
    >>> from toolkit.isometry import Linear
    >>> Concat([Linear(10, 10, gain=1), Linear(10, 10, gain=1)]).moments()  # = Linear(10, 20)
    Moments(m1=1, m2=3, variance=2)
    """

    def __init__(self, branches: Sequence[Block]) -> None:
        self.branches = _check_blocks("branches", branches)
        _check_branches("Concat", self.branches, same_ratio=False)
        self._shared = _shared_input("branches", self.branches)
        self.r_diagonal = all(b.r_diagonal for b in self.branches)

    def _widths(self) -> tuple[Width, Width]:
        return self._shared, None

    @property
    def ratio(self) -> Any:
        return sum(sp.sympify(b.ratio) for b in self.branches)

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return self._moments_at(order, ForwardStats(q))

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        seqs = [b._moments_at(order, s) for b in self.branches]
        exact = is_exact([v for seq in seqs for v in seq])
        ratios = [num(b.ratio, exact) for b in self.branches]
        gram = [[r * v for v in coerce(s, exact)] for r, s in zip(ratios, seqs)]
        total = free.free_additive_convolution(*gram)
        big_r = sum(ratios)
        return [v / big_r for v in coerce(total, exact)]

    def _propagate_q(self, q: Any) -> Any:
        return self._forward(ForwardStats(q)).q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        # every statistic is an average over the output units, which the branches share
        ratios = [b.ratio for b in self.branches]
        outs = [b._forward(s) for b in self.branches]
        total = sum(ratios)
        return ForwardStats(
            *[
                sum(r * getattr(o, k) for r, o in zip(ratios, outs)) / total
                for k in ("q", "c", "mean")
            ]
        )

    def __repr__(self) -> str:
        return f"Concat({self.branches!r})"


class Repeat(Block):
    """``block`` applied ``depth`` times (independent weights each time).

    For a symbolic depth the result is a closed form: :math:`S(w)^L` for the block's
    S-transform. This needs the block's moments to be the same at every depth: either they
    do not depend on ``q`` (linear layers, ReLU, leaky ReLU, ...) or ``q`` is a fixed point of
    :meth:`propagate_q`.

    Parameters
    ----------
    block : Block
        Shape preserving when ``depth`` is symbolic or above 1.
    depth : int or sympy.Symbol
        ``>= 1``, or a positive symbol.

    Examples
    --------
    >>> from toolkit.isometry import Linear
    >>> L, g = sp.symbols("L g", positive=True)
    >>> repeat(Linear(8, 8, gain=g), L).moments().m1
    g**(2*L)
    """

    def __init__(self, block: Block, depth: Any) -> None:
        self.block = _check_block("block", block)
        self.depth = check_depth(depth)
        if (is_symbolic(depth) or depth > 1) and not _same(block.ratio, 1):
            raise ValueError(
                f"repeat: block must preserve the width to be repeated, got ratio "
                f"{block.ratio} for depth={depth!r}"
            )
        self.r_diagonal = block.r_diagonal

    @property
    def ratio(self) -> Any:
        return self.block.ratio

    def _serial(self) -> Serial:
        return Serial([self.block] * self.depth)

    @staticmethod
    def _numerically_constant(fn: Any, s: ForwardStats) -> bool:
        """``fn(stats)`` (a list of values) agrees at two other numeric input statistics."""
        try:
            q = float(s.q) if not is_symbolic(s.q) else 1.0
            a = fn(ForwardStats(1.7 * q, 0.6 * q, 0.3 * q**0.5))
            b = fn(ForwardStats(0.9 * q))
        except (TypeError, ValueError):
            return True  # (undecided: leave it to the symbolic check)
        return all(_same(x, y) for x, y in zip(a, b))

    def _probe(self) -> tuple[ForwardStats, tuple[sp.Dummy, ...]] | None:
        """The block's output statistics for symbolic input ones, or None (quadrature)."""
        qs, cs = sp.Dummy("q", positive=True), sp.Dummy("c", positive=True)
        ms = sp.Dummy("a", real=True)
        try:
            return self.block._forward(ForwardStats(qs, cs, ms)), (qs, cs, ms)
        except (TypeError, ValueError):
            return None

    def _same_every_layer(self, order: int, s: ForwardStats) -> list[Any] | None:
        """The block's moments if every layer has the same ones, else None.

        True when ``s`` is a fixed point of the block's forward statistics or when the
        moments do not depend on them at all (checked with symbolic ``q``, ``c`` and mean).
        """
        m = self.block._moments_at(order, s)
        if _same_stats(self.block._forward(s), s):
            return m
        if not self._numerically_constant(lambda t: self.block._moments_at(order, t), s):
            return None  # (cheap to rule out before the symbolic check)
        dummies = (
            sp.Dummy("q", positive=True),
            sp.Dummy("c", positive=True),
            sp.Dummy("a", real=True),
        )
        try:
            mq = self.block._moments_at(order, ForwardStats(*dummies))
        except (TypeError, ValueError):
            return None
        if any(isinstance(v, sp.Basic) and v.has(*dummies) for v in mq):
            return None
        return m

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return self._moments_at(order, ForwardStats(q))

    def _moments_at(self, order: int, s: ForwardStats) -> list[Any]:
        try:
            return self._chain_moments(order, s)
        except (ZeroDivisionError, OverflowError) as err:
            raise ValueError(
                f"repeat: the moments of {self.block!r} over depth={self.depth!r} leave the "
                "float range (they grow or shrink geometrically with depth); use exact "
                "parameters (sympy numbers) or a symbolic depth for closed forms"
            ) from err

    def _chain_moments(self, order: int, s: ForwardStats) -> list[Any]:
        split = self.block._batch_split(order, s) if not is_symbolic(self.depth) else None
        batched = split is not None and split.batch is not None
        m = None if batched else self._same_every_layer(order, s)
        if m is not None:
            # S-transforms multiply, so the chain's S is S_block**depth: repeated squaring
            # (series_pow) for a numeric depth, a closed form for a symbolic one
            return free.repeated_product_moments(m, self.depth)
        if is_symbolic(self.depth):
            raise ValueError(
                f"repeat with symbolic depth={self.depth} needs block moments that do not "
                f"depend on the input statistics, or a fixed point of them; got q={s.q!r} -> "
                f"{self.block._forward(s).q!r} for {self.block!r}"
            )
        return self._layer_by_layer(order, s)

    def _layer_by_layer(self, order: int, s: ForwardStats) -> list[Any]:
        """Moments layer by layer while the statistics move; from a fixed point on, S**remaining.

        ``q`` of a saturating activation (tanh, ...) settles on its fixed point within a few
        hundred layers, so a huge depth costs those layers plus one repeated squaring.
        """
        seqs, splits = [], []
        remaining = int(self.depth)
        with tqdm(total=remaining, desc="repeat", leave=False, disable=remaining < 10_000) as bar:
            while remaining:
                m = self.block._moments_at(order, s)
                split = self.block._batch_split(order, s)
                seqs.append(m)
                splits.append(split)
                remaining -= 1
                bar.update(1)
                if not remaining:
                    break
                s_next = self.block._forward(s)
                if (split is None or split.batch is None) and _same_stats(s_next, s):
                    seqs.append(free.repeated_product_moments(m, remaining))
                    splits.append(None)
                    bar.update(remaining)
                    break
                s = s_next
        return compose(seqs, [1] * len(seqs), splits, order)

    def _batch_split(self, order: int, s: ForwardStats) -> BatchSplit | None:
        if is_symbolic(self.depth):
            return None
        splits = []
        for i in range(int(self.depth)):
            split = self.block._batch_split(order, s)
            if split is None:
                return None
            splits.append(split)
            if i + 1 < int(self.depth):
                s = self.block._forward(s)
        return chain_split(splits, order)

    def _q_map(self, zero_mean: bool) -> tuple[Any, sp.Dummy] | None:
        """``(q_out, q)`` when the block's output ``q`` depends on the input's ``q`` only.

        With ``zero_mean``, also require the output's ``c`` and mean to vanish identically
        (a zero-mean stream stays zero-mean, so ``q`` describes it completely).
        """
        try:  # cheap numeric rule-outs before the symbolic check
            plain = self.block._forward(ForwardStats(1.3))
            shifted = self.block._forward(ForwardStats(1.3, 0.5, 0.2))
        except (TypeError, ValueError):
            return None
        if not _same(plain.q, shifted.q):
            return None
        if zero_mean and not (is_zero(plain.c) and is_zero(plain.mean)):
            return None
        probe = self._probe()
        if probe is None:
            return None
        out, (qs, cs, ms) = probe
        zero = (out.c, out.mean) if zero_mean else ()
        if any(sp.sympify(v).has(cs, ms) for v in (out.q, *zero)):
            return None
        if any(not is_zero(sp.simplify(v)) for v in zero):
            return None
        return sp.sympify(out.q), qs

    def _affine_q(self, zero_mean: bool = True) -> tuple[Any, Any] | None:
        """``(a, b)`` when the block maps ``q`` to ``a q + b`` (see :meth:`_q_map`)."""
        qmap = self._q_map(zero_mean)
        if qmap is None:
            return None
        expr, qs = qmap
        if sp.simplify(sp.diff(expr, qs, 2)) != 0:
            return None
        return sp.simplify(sp.diff(expr, qs)), sp.simplify(expr.subs(qs, 0))

    def _propagate_q(self, q: Any) -> Any:
        return self._forward_q(ForwardStats(q))

    def _forward_q(self, s: ForwardStats) -> Any:
        # a q that moves on its own (whatever the means do) composes by repeated squaring
        affine = self._affine_q(zero_mean=False)
        if affine is not None and not _same_stats(self.block._forward(s), s):
            return self._affine_power(affine, s.q)
        return self._forward(s).q

    def _forward(self, s: ForwardStats) -> ForwardStats:
        if _same_stats(self.block._forward(s), s):
            return s
        L = self.depth
        affine = self._affine_q() if s.mean_free else None
        if affine is not None:
            return ForwardStats(self._affine_power(affine, s.q))
        if is_symbolic(L):
            raise ValueError(
                f"repeat with symbolic depth={L}: the forward statistics of {self.block!r} "
                f"are not an affine, zero-mean map of q, and {s!r} is not a fixed point"
            )
        bar = tqdm(total=int(L), desc="repeat", leave=False, disable=int(L) < 10_000)
        with bar:
            for _ in range(int(L)):  # until the statistics reach the block's fixed point
                s_next = self.block._forward(s)
                bar.update(1)
                if _same_stats(s_next, s):
                    break
                s = s_next
        return s

    def _affine_power(self, affine: tuple[Any, Any], q: Any) -> Any:
        """``q`` after ``depth`` steps of ``q -> a q + b``."""
        L = self.depth
        if not is_symbolic(L):
            # compose q -> a q + b with itself L times by repeated squaring
            a, b = coerce(affine, is_exact([*affine, q]))
            total_a, total_b = a * 0 + 1, b * 0
            while L:
                if L & 1:
                    total_a, total_b = a * total_a, a * total_b + b
                L >>= 1
                if L:
                    a, b = a * a, a * b + b
            return total_a * q + total_b
        a, b = affine
        if b == 0:
            return a**L * q
        if sp.simplify(a - 1) == 0:
            return q + L * b
        return a**L * q + b * (a**L - 1) / (a - 1)

    def _law(self, s: ForwardStats) -> Any:
        if is_symbolic(self.depth):
            raise TypeError(f"spectral_density needs a numeric depth, got depth={self.depth!r}")
        return self._serial()._law(s)

    def _widths(self) -> tuple[Width, Width]:
        return self.block._widths()

    def _spectral_law(self, q: float) -> Any:
        return self._law(ForwardStats(q))

    def _items(self, flatten: bool) -> list[Block]:
        if is_symbolic(self.depth):
            raise TypeError(f"profile needs a numeric depth, got depth={self.depth!r}")
        if flatten:
            return self._serial()._items(True)
        return [self.block] * self.depth

    def __repr__(self) -> str:
        return f"repeat({self.block!r}, {self.depth!r})"


def check_depth(depth: Any, name: str = "depth") -> Any:
    """A depth: an int ``>= 1``, or a sympy expression that is positive and real.

    A symbol without assumptions is taken to be a positive integer; one declared complex or
    imaginary, or an expression with ``I`` in it, is refused (``S**L`` is then meaningless).
    """
    if not is_symbolic(depth):
        return check_int(name, depth, 1)
    complex_symbols = [
        x for x in depth.free_symbols if x.is_real is not True and x.is_complex is True
    ]
    if depth.is_real is False or depth.has(sp.I) or complex_symbols:
        raise ValueError(f"{name} must be a real (positive) symbol or expression, got {depth!r}")
    if depth.is_nonpositive:
        raise ValueError(f"{name} must be positive, got {name}={depth!r}")
    if depth.has(sp.nan, sp.oo, -sp.oo, sp.zoo):
        raise ValueError(f"{name} must be finite, got {name}={depth!r}")
    return depth


def repeat(block: Block, depth: Any) -> Repeat:
    """``block`` stacked ``depth`` times; see :class:`Repeat`.

    Parameters
    ----------
    block : Block
        A shape-preserving block (ratio 1) when ``depth`` is symbolic or above 1.
    depth : int or sympy.Symbol
        ``>= 1``, or a symbol for closed forms in the depth.

    Returns
    -------
    Repeat

    Examples
    --------
    >>> import sympy as sp
    >>> from toolkit.isometry import Linear
    >>> L = sp.Symbol("L", positive=True)
    >>> repeat(Linear(8, 8, gain=2), L).moments()
    Moments(m1=4**L, m2=16**L*(L + 1), variance=16**L*L)
    """
    return Repeat(block, depth)
