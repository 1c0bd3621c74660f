r"""The analytic twin of a :class:`~toolkit.isometry.NetworkDesign`.

:func:`design_block` turns a design (the family of random networks that
:func:`~toolkit.isometry.build_network` draws) into the composition of components
whose Jacobian moments the free-probability engine predicts, block for block.  Both are
built by :func:`~toolkit.isometry.measure.network.compose_block` (the blocks are listed in
:mod:`toolkit.isometry.measure.network`): here with :class:`AnalyticLayers`, where an
orthogonal 3x3 convolution is the delta-orthogonal ``Conv2d``.

:func:`design_formula` gives the same design's end-to-end moments as closed forms in the
depth :math:`L` and the gain :math:`g` (sympy), for display.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sympy as sp

from ..._checks import check_int
from ..engine.blocks import Block, Residual, Serial, repeat
from ..engine.linear import Conv2d, Linear
from ..engine.moments import Moments
from ..engine.normalization import BatchNorm
from .network import ActivationLayers, NetworkDesign, as_design, compose_block

__all__ = ["AnalyticLayers", "Formula", "design_block", "design_formula"]


_PIECEWISE_LINEAR = ("relu", "leaky_relu", "linear")


def _exact(x: float) -> sp.Rational:
    return sp.Rational(x).limit_denominator(10**4)


class AnalyticLayers:
    """The layers of a design's block as analytic components with weight scale ``gain``.

    ``gain`` may be a sympy symbol; ``exact=True`` turns the design's float slope and
    residual scale into nearby rationals so that the moments stay exact. ``batch`` is the
    batch size of batch norm's statistics (None: the large-batch limit).
    """

    def __init__(self, gain: Any = None, exact: bool = False, batch: int | None = None) -> None:
        self.gain, self.exact, self.batch = gain, exact, batch

    def layer(self, design: NetworkDesign) -> Block:
        w, gain = design.width, design.gain if self.gain is None else self.gain
        if design.architecture == "cnn":
            init = "delta_orthogonal" if design.init == "orthogonal" else "gaussian"
            return Conv2d(w, w, 3, init=init, gain=gain)
        return Linear(w, w, init=design.init, gain=gain)

    def norm(self, design: NetworkDesign) -> Block:
        if self.batch is None or design.architecture != "cnn":
            return BatchNorm(batch=self.batch)
        # BatchNorm2d's statistics run over the batch and the image: B s^2 values per channel
        return BatchNorm(batch=self.batch * design.image_size**2)

    def activation(self, layers: ActivationLayers, design: NetworkDesign) -> Block:
        if not layers.sloped:
            return layers.analytic()
        return layers.analytic(_exact(design.slope) if self.exact else design.slope)

    def serial(self, parts: Sequence[Block]) -> Block:
        return Serial(list(parts))

    def residual(self, branch: Block, design: NetworkDesign) -> Block:
        scale = design.residual_scale
        return Residual(branch, scale=_exact(scale) if self.exact else scale)


def _one_block(
    design: NetworkDesign, gain: Any, exact: bool = False, batch: int | None = None
) -> Block:
    return compose_block(design, AnalyticLayers(gain, exact, batch))


def design_block(
    design: NetworkDesign | dict, *, batch: int | None = None, **overrides: Any
) -> Block:
    """The analytic block chain of ``design``: ``Serial`` of ``depth`` copies of one block.

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields.
    batch : int, optional
        Batch size of the batch statistics, as in
        :func:`~toolkit.isometry.sample_block_moments` (``>= 3``; it matters only with
        batch norm, whose batch Jacobian has :math:`m_1` larger by :math:`(B-2)/(B-3)`, and
        whose statistics split the spectrum of a residual chain, see
        :mod:`toolkit.isometry.engine.batch`; for ``"cnn"`` the statistics run over
        ``batch * image_size**2`` values). None (default): the large-batch limit.
    **overrides
        Fields to replace (``None`` values are ignored).

    Returns
    -------
    Block
        The analytic twin of :func:`~toolkit.isometry.build_network`'s networks.

    Examples
    --------
    >>> from toolkit.isometry import NetworkDesign
    >>> from toolkit.isometry import profile
    >>> chain = design_block(NetworkDesign("mlp", width=256, depth=3, gain=2**0.5))
    >>> profile(chain).cumulative_m1.round(6).tolist()  # Kaiming ReLU: m1 = 1 at every depth
    [1.0, 1.0, 1.0]
    """
    design = as_design(design, **overrides)
    if batch is not None:
        batch = check_int("batch", batch, 3)
    block = _one_block(design, design.gain, batch=batch)
    return Serial([block] * design.depth)


@dataclass(frozen=True)
class Formula:
    r"""Closed-form moments of a design, from :func:`design_formula`.

    Attributes
    ----------
    moments : Moments
        The moments, sympy expressions in ``symbols``.
    symbols : dict of str to sympy.Symbol
        The symbols used (``"L"`` the depth, ``"g"`` the gain).
    scope : {"network", "block"}
        Functions of the depth ``L``, or one block's moments (where the second moment ``q``
        drifts with depth and no closed form in ``L`` exists).

    Examples
    --------
    >>> from toolkit.isometry import NetworkDesign
    >>> f = design_formula(NetworkDesign(activation="relu"))
    >>> f.scope, sorted(f.symbols), f.moments.m1
    ('network', ['L', 'g'], (g**2/2)**L)
    """

    moments: Moments
    symbols: dict[str, sp.Symbol]
    scope: str

    def latex(self) -> str:
        """The first moment and the variance as a LaTeX ``aligned`` block."""
        what = r"J J^T" if self.scope == "network" else r"J_\ell J_\ell^T"
        exprs = (sp.sympify(v) for v in (self.moments.m1, self.moments.variance))
        m1, var = (sp.latex(e.evalf(4) if e.atoms(sp.Float) else e) for e in exprs)
        return (
            rf"\begin{{aligned}} \phi({what}) &= {m1} \\ "
            rf"\varphi({what}) &= {var} \end{{aligned}}"
        )


def design_formula(design: NetworkDesign | dict, **overrides: Any) -> Formula:
    """Moments of ``design`` as sympy expressions in the depth ``L`` and the gain ``g``.

    Tries, in order: closed forms in ``L`` and ``g``; in ``L`` with the gain as a number
    (activations evaluated by quadrature need a numeric second moment ``q``); and, where
    ``q`` drifts from block to block so that no closed form in ``L`` exists, the moments of
    one block (in ``g`` where possible).  Substituting ``L = depth`` and ``g = gain`` gives
    the numeric prediction.

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields (its depth and, for piecewise-linear
        activations without normalization, its gain are replaced by symbols).
    **overrides
        Fields to replace (``None`` values are ignored).

    Returns
    -------
    Formula

    Examples
    --------
    >>> from toolkit.isometry import NetworkDesign
    >>> f = design_formula(NetworkDesign("mlp", activation="linear", depth=4))
    >>> f.scope, f.moments.m1
    ('network', g**(2*L))
    """
    design = as_design(design, **overrides)
    if design.activation in _PIECEWISE_LINEAR and design.normalization == "none":
        design = dataclasses.replace(design, gain=1.0)  # the formula is symbolic in g anyway
    return _formula(dataclasses.replace(design, depth=1))


@functools.lru_cache(maxsize=256)
def _formula(design: NetworkDesign) -> Formula:
    L, g = sp.Symbol("L", positive=True, integer=True), sp.Symbol("g", positive=True)
    # A symbolic gain only where the activation's moments are closed forms in q; sympy's
    # exact integrals for smooth activations at symbolic q take seconds to minutes.
    symbolic_gain = design.activation in _PIECEWISE_LINEAR and design.normalization == "none"
    attempts: tuple[tuple[Callable[[], Block], dict[str, sp.Symbol], str], ...] = (
        (lambda: repeat(_one_block(design, g, exact=True), L), {"L": L, "g": g}, "network"),
        (lambda: repeat(_one_block(design, design.gain), L), {"L": L}, "network"),
        (lambda: _one_block(design, g, exact=True), {"g": g}, "block"),
        (lambda: _one_block(design, design.gain), {}, "block"),
    )
    if not symbolic_gain:
        attempts = attempts[1::2]
    for build, symbols, scope in attempts:
        try:
            return Formula(build().moments(), symbols, scope)
        except (TypeError, ValueError):
            continue
    raise ValueError(f"no closed form for {design}")  # pragma: no cover - last attempt is numeric
