r"""Blocks and their composition: :class:`Serial`, :class:`Parallel`, :class:`Residual`, ...

Every block knows, for an input of per-coordinate second moment :math:`q`,

* the moments of :math:`JJ^T` (:meth:`Block.moments`), normalized by the block's
  **output** width, and
* the output second moment (:meth:`Block.propagate_q`, mean-field).

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
  The output second moments add (branches are uncorrelated).
* :class:`Residual` -- :math:`J = I + \alpha J_b`, a :class:`Parallel` of the identity
  and the scaled branch: :math:`m_1 = 1 + \alpha^2 m_{1,b}`,
  :math:`\mathrm{Var} = 2\alpha^2 m_{1,b} + \alpha^4 \mathrm{Var}_b`.
* :class:`Concat` -- :math:`J = [J_1; J_2; \dots]`: :math:`J^TJ = \sum_i J_i^TJ_i` is a
  free sum in the input space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sympy as sp
from tqdm.auto import tqdm

from ..._checks import check_int, check_positive, check_real, is_symbolic
from . import free
from ._series import coerce, is_exact, num
from .moments import Moments
from .spectra import AtomLaw, ProductLaw, SumLaw

__all__ = [
    "Block",
    "Concat",
    "Identity",
    "Parallel",
    "Repeat",
    "Residual",
    "Scale",
    "Serial",
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
        return Moments(*self._jacobian_moments(order, check_q(q)))

    def propagate_q(self, q: Any = 1.0) -> Any:
        """Per-coordinate second moment of the output for input second moment ``q``.

        Parameters
        ----------
        q : number or sympy expression
            Second moment of the block's input, ``> 0``.

        Returns
        -------
        number or sympy expression

        Examples
        --------
        >>> from toolkit.isometry import ReLU
        >>> ReLU().propagate_q(2)
        1
        """
        return self._propagate_q(check_q(q))

    # -- to implement ----------------------------------------------------------------
    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        raise NotImplementedError

    def _propagate_q(self, q: Any) -> Any:
        return q

    def _spectral_law(self, q: float) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no spectral law yet")

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


def check_q(q: Any) -> Any:
    """The input second moment ``q > 0`` (a symbol is assumed positive), returned unchanged.

    Unchanged rather than converted to float: an exact ``q`` keeps the moments exact.
    """
    check_positive("q", q, symbolic=True)
    return q


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

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        return [sp.Integer(1)] * order

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([1.0], [1.0])


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

    def __init__(self, factor: Any) -> None:
        check_real("factor", factor, symbolic=True)
        self.factor = factor

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        (c,) = coerce([self.factor])
        return [c ** (2 * k) for k in range(1, order + 1)]

    def _propagate_q(self, q: Any) -> Any:
        return self.factor**2 * q

    def _spectral_law(self, q: float) -> Any:
        return AtomLaw([float(self.factor) ** 2], [1.0])

    def __repr__(self) -> str:
        return f"Scale({self.factor!r})"


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
        seqs, ratios = [], []
        for b in self.blocks:
            seqs.append(b._jacobian_moments(order, q))
            ratios.append(b.ratio)
            q = b._propagate_q(q)
        exact = is_exact([v for s in seqs for v in s])
        seqs = [coerce(s, exact) for s in seqs]
        return free._product(seqs, coerce(ratios, exact), order)

    def _propagate_q(self, q: Any) -> Any:
        for b in self.blocks:
            q = b._propagate_q(q)
        return q

    def _spectral_law(self, q: float) -> Any:
        items = []
        for b in self.blocks:
            items.append((b._spectral_law(q), float(b.ratio)))
            q = float(b._propagate_q(q))
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
        return free.r_diagonal_sum(*[b._jacobian_moments(order, q) for b in self.branches])

    def _propagate_q(self, q: Any) -> Any:
        return sum(b._propagate_q(q) for b in self.branches)

    def _spectral_law(self, q: float) -> Any:
        return SumLaw([b._spectral_law(q) for b in self.branches])

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
        m = self.branch._jacobian_moments(order, q)
        exact = is_exact([*m, self.scale])
        s2 = num(self.scale, exact) ** 2
        scaled = [v * s2 ** (k + 1) for k, v in enumerate(coerce(m, exact))]
        return free.r_diagonal_sum([num(1, exact)] * order, scaled)

    def _propagate_q(self, q: Any) -> Any:
        return q + self.scale**2 * self.branch._propagate_q(q)

    def _spectral_law(self, q: float) -> Any:
        s2 = float(self.scale) ** 2
        if s2 == 0:
            return AtomLaw([1.0], [1.0])
        scaled = ProductLaw([(self.branch._spectral_law(q), 1.0), (AtomLaw([s2], [1.0]), 1.0)])
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
        seqs = [b._jacobian_moments(order, q) for b in self.branches]
        exact = is_exact([v for s in seqs for v in s])
        ratios = [num(b.ratio, exact) for b in self.branches]
        gram = [[r * v for v in coerce(s, exact)] for r, s in zip(ratios, seqs)]
        total = free.free_additive_convolution(*gram)
        big_r = sum(ratios)
        return [v / big_r for v in coerce(total, exact)]

    def _propagate_q(self, q: Any) -> Any:
        ratios = [b.ratio for b in self.branches]
        return sum(r * b._propagate_q(q) for r, b in zip(ratios, self.branches)) / sum(ratios)

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

    def _same_every_layer(self, order: int, q: Any) -> list[Any] | None:
        """The block's moments if every layer has the same ones, else None.

        True when ``q`` is a fixed point of the block's ``propagate_q`` or when the moments
        do not depend on ``q`` at all (checked with a symbolic ``q``).
        """
        m = self.block._jacobian_moments(order, q)
        if _same(self.block._propagate_q(q), q):
            return m
        qs = sp.Dummy("q", positive=True)
        try:
            mq = self.block._jacobian_moments(order, qs)
        except (TypeError, ValueError):
            return None
        if any(isinstance(v, sp.Basic) and v.has(qs) for v in mq):
            return None
        return m

    def _jacobian_moments(self, order: int, q: Any) -> list[Any]:
        try:
            return self._chain_moments(order, q)
        except (ZeroDivisionError, OverflowError) as err:
            raise ValueError(
                f"repeat: the moments of {self.block!r} over depth={self.depth!r} leave the "
                "float range (they grow or shrink geometrically with depth); use exact "
                "parameters (sympy numbers) or a symbolic depth for closed forms"
            ) from err

    def _chain_moments(self, order: int, q: Any) -> list[Any]:
        m = self._same_every_layer(order, q)
        if m is not None:
            # S-transforms multiply, so the chain's S is S_block**depth: repeated squaring
            # (series_pow) for a numeric depth, a closed form for a symbolic one
            return free.repeated_product_moments(m, self.depth)
        if is_symbolic(self.depth):
            raise ValueError(
                f"repeat with symbolic depth={self.depth} needs block moments that do not "
                f"depend on q, or q at a fixed point of propagate_q; got q={q!r} -> "
                f"{self.block._propagate_q(q)!r} for {self.block!r}"
            )
        return self._layer_by_layer(order, q)

    def _layer_by_layer(self, order: int, q: Any) -> list[Any]:
        """Moments layer by layer while ``q`` moves; from a fixed point on, S**remaining.

        ``q`` of a saturating activation (tanh, ...) settles on its fixed point within a few
        hundred layers, so a huge depth costs those layers plus one repeated squaring.
        """
        seqs = []
        remaining = int(self.depth)
        with tqdm(total=remaining, desc="repeat", leave=False, disable=remaining < 10_000) as bar:
            while remaining:
                m = self.block._jacobian_moments(order, q)
                q_next = self.block._propagate_q(q)
                seqs.append(m)
                remaining -= 1
                bar.update(1)
                if remaining and _same(q_next, q):
                    seqs.append(free.repeated_product_moments(m, remaining))
                    bar.update(remaining)
                    break
                q = q_next
        exact = is_exact([v for seq in seqs for v in seq])
        seqs = [coerce(seq, exact) for seq in seqs]
        return free._product(seqs, coerce([1] * len(seqs), exact), order)

    def _affine_q(self) -> tuple[Any, Any] | None:
        """``(a, b)`` when the block maps ``q`` to ``a q + b``, else None."""
        qs = sp.Dummy("q", positive=True)
        try:
            expr = sp.sympify(self.block._propagate_q(qs))
        except (TypeError, ValueError):
            return None
        if sp.simplify(sp.diff(expr, qs, 2)) != 0:
            return None
        return sp.simplify(sp.diff(expr, qs)), sp.simplify(expr.subs(qs, 0))

    def _propagate_q(self, q: Any) -> Any:
        q1 = self.block._propagate_q(q)
        if _same(q1, q):
            return q
        affine = self._affine_q()
        L = self.depth
        if not is_symbolic(L):
            if affine is None:
                for _ in range(int(L)):  # until q reaches the block's fixed point
                    q_next = self.block._propagate_q(q)
                    if _same(q_next, q):
                        break
                    q = q_next
                return q
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
        if affine is None:
            raise ValueError(
                f"repeat with symbolic depth={self.depth}: q propagation of "
                f"{self.block!r} is not affine in q and q={q!r} is not a fixed point"
            )
        a, b = affine
        if b == 0:
            return a**L * q
        if sp.simplify(a - 1) == 0:
            return q + L * b
        return a**L * q + b * (a**L - 1) / (a - 1)

    def _widths(self) -> tuple[Width, Width]:
        return self.block._widths()

    def _spectral_law(self, q: float) -> Any:
        if is_symbolic(self.depth):
            raise TypeError(f"spectral_density needs a numeric depth, got depth={self.depth!r}")
        return self._serial()._spectral_law(q)

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
