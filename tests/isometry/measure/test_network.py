"""One map from a design to layers: the drawn torch block and the analytic twin agree."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.isometry import (
    Block,
    NetworkDesign,
    ResidualBlock,
    build_network,
    design_block,
    predict_block,
)
from toolkit.isometry.measure.designs import AnalyticLayers
from toolkit.isometry.measure.network import (
    ACTIVATION_LAYERS,
    ACTIVATIONS,
    ARCHITECTURES,
    INITS,
    NORMALIZATIONS,
    as_design,
    compose_block,
)


def _shape(block: Block) -> Any:
    """The structure of an analytic block: class names, nesting and weight inits."""
    name = type(block).__name__
    if hasattr(block, "blocks"):
        return (name, [_shape(b) for b in block.blocks])
    if hasattr(block, "branch"):
        return (name, _shape(block.branch))
    return (name, getattr(block, "init", None))


@pytest.mark.parametrize(
    ("architecture", "activation", "normalization", "init"),
    list(itertools.product(ARCHITECTURES, ACTIVATIONS, NORMALIZATIONS, INITS)),
)
def test_drawn_block_is_recognised_as_its_analytic_twin(
    architecture: str, activation: str, normalization: str, init: str
) -> None:
    design = NetworkDesign(
        architecture, width=8, depth=1, init=init, activation=activation, gain=1.3,
        normalization=normalization, residual_scale=0.5, slope=0.2, image_size=3,
    )  # fmt: skip
    drawn = build_network(design, seed=0).block0
    recognised, note = predict_block(drawn)
    assert recognised is not None, note
    twin = compose_block(design, AnalyticLayers())
    assert _shape(recognised) == _shape(twin)
    assert _shape(design_block(design).blocks[0]) == _shape(twin)


def test_recognised_weights_carry_the_design_gain() -> None:
    # orthogonal weights are recognised exactly, so the twin's gain comes back
    design = NetworkDesign("mlp", width=16, depth=1, init="orthogonal", gain=1.7)
    recognised, _ = predict_block(build_network(design, seed=3).block0)
    assert recognised is not None
    layer = recognised.blocks[0]
    assert float(layer.gain) == pytest.approx(1.7, rel=1e-9)


def test_activation_table_matches_torch_and_the_engine() -> None:
    # E[f'(h)^2k], h ~ N(0, q), of each torch module (autograd on a fine grid, trapezoid
    # rule: the kinks of ReLU and SELU cost O(grid step)) against its component's moments
    for q in (0.5, 2.0):
        grid = np.linspace(-12 * math.sqrt(q), 12 * math.sqrt(q), 40001)
        weights = np.exp(-grid * grid / (2 * q)) / math.sqrt(2 * math.pi * q) * (grid[1] - grid[0])
        weights[[0, -1]] /= 2
        h = torch.tensor(grid, requires_grad=True)
        for name, layers in ACTIVATION_LAYERS.items():
            if layers is None:
                continue
            module = layers.torch(0.2) if layers.sloped else layers.torch()
            component = layers.analytic(0.2) if layers.sloped else layers.analytic()
            (grad,) = torch.autograd.grad(module(h).sum(), h)
            d2 = grad.numpy() ** 2
            want = component.moments(order=2, q=q)
            assert float(weights @ d2) == pytest.approx(float(want.m1), rel=1e-3), name
            assert float(weights @ d2**2) == pytest.approx(float(want.m2), rel=1e-3), name


def test_residual_block_and_as_design() -> None:
    blk = ResidualBlock(nn.Linear(3, 3, bias=False), scale=0.25)
    x = torch.randn(2, 3)
    assert torch.allclose(blk(x), x + 0.25 * blk.branch(x))
    with pytest.raises(TypeError, match="scale"):
        ResidualBlock(nn.Identity(), scale="big")  # type: ignore[arg-type]
    assert as_design({"width": 4}, depth=3, gain=None) == NetworkDesign(width=4, depth=3)
    with pytest.raises(TypeError, match="design must be a NetworkDesign"):
        as_design([("width", 4)])  # type: ignore[arg-type]
    assert math.isclose(as_design(NetworkDesign(), gain=2.0).gain, 2.0)
