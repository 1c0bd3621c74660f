r"""A family of random networks, :class:`NetworkDesign`, and the one map from its fields to layers.

Every draw of a design is an ``nn.Sequential`` of ``depth`` blocks named
``block0 ... block{depth-1}`` so that every block can be measured on its own:

* ``"mlp"``: ``Linear(width, width) -> [BatchNorm1d] -> activation``;
* ``"cnn"``: ``Conv2d(width, width, 3, padding=1, padding_mode="circular") ->
  [BatchNorm2d] -> activation`` on ``[B, width, image_size, image_size]`` inputs
  (circular padding: no border effects, so the Jacobian is block circulant);
* ``"residual"``: :class:`ResidualBlock` :math:`y = x + \alpha\, F(x)` with the
  ``"mlp"`` block as branch :math:`F` and :math:`\alpha` = ``residual_scale``.

The same block exists twice: as ``torch.nn`` modules that
:func:`~toolkit.isometry.measure.sampling.build_network` draws, and as the analytic components
of :mod:`toolkit.isometry.engine` that :func:`~toolkit.isometry.measure.designs.design_block`
composes.  Both are built by :func:`compose_block` from one :class:`LayerBuilder` each, and
both take an activation name to a layer through the one table :data:`ACTIVATION_LAYERS`, which
:func:`~toolkit.isometry.measure.analyze.predict_block` also reads (``nn`` class to component).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import torch
from torch import nn

from ..._checks import check_choice, check_int, check_positive, check_real
from ..engine.activations import GELU, Activation, LeakyReLU, ReLU, SeLU, Tanh

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_LAYERS",
    "ARCHITECTURES",
    "INITS",
    "NORMALIZATIONS",
    "ActivationLayers",
    "LayerBuilder",
    "NetworkDesign",
    "ResidualBlock",
    "as_design",
    "compose_block",
]


@dataclass(frozen=True)
class ActivationLayers:
    """One activation as a ``torch.nn`` module class and as an analytic component class.

    ``sloped`` classes take the design's ``slope`` as their only argument.
    """

    torch: type[nn.Module]
    analytic: Callable[..., Activation]
    sloped: bool = False


#: Activation name -> its two layers; ``"linear"`` (no activation) maps to ``None``.
ACTIVATION_LAYERS: dict[str, ActivationLayers | None] = {
    "relu": ActivationLayers(nn.ReLU, ReLU),
    "leaky_relu": ActivationLayers(nn.LeakyReLU, LeakyReLU, sloped=True),
    "tanh": ActivationLayers(nn.Tanh, Tanh),
    "gelu": ActivationLayers(nn.GELU, GELU),
    "selu": ActivationLayers(nn.SELU, SeLU),
    "linear": None,
}
ARCHITECTURES = ("mlp", "cnn", "residual")
ACTIVATIONS = tuple(ACTIVATION_LAYERS)
INITS = ("gaussian", "orthogonal")
NORMALIZATIONS = ("none", "batchnorm")


@dataclass(frozen=True)
class NetworkDesign:
    r"""A family of random networks (see the module docstring for the blocks).

    Weights have no biases; batch norm has weight 1 and bias 0.  ``"gaussian"`` draws
    :math:`W_{ij}\sim\mathcal N(0, \text{gain}^2/\text{fan\_in})` with ``fan_in = width``
    (``width * 9`` for convolutions); ``"orthogonal"`` is ``gain`` times a Haar orthogonal
    matrix (for convolutions the delta-orthogonal kernel of Xiao et al. 2018).  For ReLU,
    ``gain = sqrt(2)`` is Kaiming initialization.

    Parameters
    ----------
    architecture : {"mlp", "cnn", "residual"}
        The block type.
    width : int
        Features (``"mlp"``, ``"residual"``) or channels (``"cnn"``), ``>= 1``.
    depth : int
        Number of blocks, ``>= 1``.
    init : {"gaussian", "orthogonal"}
        Weight distribution.
    gain : float
        Weight scale, ``> 0``.
    activation : {"relu", "leaky_relu", "tanh", "gelu", "selu", "linear"}
        The nonlinearity after the (normalized) layer; ``"linear"`` means none.
    slope : float
        The leaky-ReLU negative slope, in [0, 1].
    normalization : {"none", "batchnorm"}
        Batch norm after the layer (training mode: batch statistics).
    residual_scale : float
        :math:`\alpha` of residual blocks.
    image_size : int
        Spatial side of ``"cnn"`` inputs.

    Raises
    ------
    TypeError, ValueError
        For a field of the wrong type or out of range; the message names the field.

    Examples
    --------
    >>> NetworkDesign("mlp", width=64, depth=3, gain=2**0.5).activation
    'relu'
    """

    architecture: str = "mlp"
    width: int = 128
    depth: int = 4
    init: str = "gaussian"
    gain: float = 1.0
    activation: str = "relu"
    slope: float = 0.01
    normalization: str = "none"
    residual_scale: float = 1.0
    image_size: int = 6

    def __post_init__(self) -> None:
        for name, allowed in (
            ("architecture", ARCHITECTURES),
            ("init", INITS),
            ("activation", ACTIVATIONS),
            ("normalization", NORMALIZATIONS),
        ):
            check_choice(f"NetworkDesign.{name}", getattr(self, name), allowed)
        for name in ("width", "depth", "image_size"):
            check_int(f"NetworkDesign.{name}", getattr(self, name), 1)
        # the analytic LeakyReLU needs a slope in [0, 1]; check it here even when the
        # activation is another one, so a design never holds a value no block accepts
        check_real("NetworkDesign.slope", self.slope, 0, 1)
        check_real("NetworkDesign.residual_scale", self.residual_scale)
        check_positive("NetworkDesign.gain", self.gain)

    @property
    def features(self) -> int:
        """Elements per sample of every block's input and output."""
        return self.width * (self.image_size**2 if self.architecture == "cnn" else 1)


def as_design(design: NetworkDesign | Mapping[str, Any], **overrides: Any) -> NetworkDesign:
    """``design`` (or a mapping of its fields) with the non-``None`` ``overrides`` applied.

    Examples
    --------
    >>> as_design({"width": 8}, depth=2, gain=None).depth
    2
    """
    if isinstance(design, Mapping):
        fields = {f.name for f in dataclasses.fields(NetworkDesign)}
        unknown = sorted(str(k) for k in design if k not in fields)
        if unknown:
            raise TypeError(
                f"design has unknown NetworkDesign field(s) {unknown}; the fields are "
                f"{sorted(fields)}"
            )
        design = NetworkDesign(**design)
    if not isinstance(design, NetworkDesign):
        raise TypeError(
            "design must be a NetworkDesign or a mapping of its fields, "
            f"got {type(design).__name__}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(design, **overrides) if overrides else design


class ResidualBlock(nn.Module):
    r"""Residual block :math:`y = x + \alpha\,F(x)`, Jacobian :math:`I + \alpha J_F`.

    Parameters
    ----------
    branch : torch.nn.Module
        The residual branch :math:`F` (shape preserving).
    scale : float
        :math:`\alpha`.

    Examples
    --------
    >>> blk = ResidualBlock(nn.Linear(4, 4), scale=0.5)
    >>> blk(torch.zeros(2, 4)).shape
    torch.Size([2, 4])
    """

    def __init__(self, branch: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.branch = branch
        self.scale = check_real("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.branch(x)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


T = TypeVar("T")


class LayerBuilder(Protocol[T]):
    """The layers of one block of a design, in one representation (torch or analytic)."""

    def layer(self, design: NetworkDesign) -> T:
        """The linear map: ``Linear`` or ``Conv2d`` with the design's init and gain."""
        ...

    def norm(self, design: NetworkDesign) -> T:
        """Batch normalization."""
        ...

    def activation(self, layers: ActivationLayers, design: NetworkDesign) -> T:
        """The design's activation, given its two classes."""
        ...

    def serial(self, parts: Sequence[T]) -> T:
        """The parts one after another."""
        ...

    def residual(self, branch: T, design: NetworkDesign) -> T:
        """:math:`x + \\alpha F(x)` with ``alpha = design.residual_scale``."""
        ...


def compose_block(design: NetworkDesign, builder: LayerBuilder[T]) -> T:
    """One block of ``design``: ``layer -> [norm] -> [activation]``, wrapped if residual.

    Examples
    --------
    >>> from toolkit.isometry.measure.designs import AnalyticLayers
    >>> compose_block(NetworkDesign(width=4, normalization="batchnorm"), AnalyticLayers())
    Serial([Linear(4, 4, init='gaussian', gain=1.0), BatchNorm(gamma=1, beta=0, eps=0), ReLU()])
    """
    parts = [builder.layer(design)]
    if design.normalization == "batchnorm":
        parts.append(builder.norm(design))
    layers = ACTIVATION_LAYERS[design.activation]
    if layers is not None:
        parts.append(builder.activation(layers, design))
    block = builder.serial(parts)
    if design.architecture == "residual":
        block = builder.residual(block, design)
    return block
