r"""Monte-Carlo sampling of random networks: Jacobian spectra and per-block moments.

A :class:`~toolkit.isometry.measure.network.NetworkDesign` describes a family of random
networks (its blocks are listed in :mod:`toolkit.isometry.measure.network`); every draw has
fresh weights, drawn in float64 on the CPU.  Orthogonal convolutions are delta-orthogonal
(Xiao et al. 2018): their Jacobian is exactly ``gain`` times an orthogonal matrix.

Inputs are standard normal (second moment ``q = 1``). Networks with batch norm
run in training mode (batch statistics over ``batch`` samples). The analytic
twin of a design is :func:`toolkit.isometry.measure.designs.design_block`.

Examples
--------
>>> from toolkit.isometry import NetworkDesign, sample_spectrum
>>> design = NetworkDesign("mlp", width=128, depth=1, activation="linear")
>>> eig = sample_spectrum(design, samples=2, seed=0)      # Marchenko-Pastur, ratio 1
>>> eig.shape, bool(abs(eig.mean() - 1) < 0.1), bool(abs((eig**2).mean() - 2) < 0.3)
((2, 128), True, True)
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import jacrev
from tqdm.auto import tqdm

from ..._backend import resolve_device
from ..._checks import check_int, make_generator
from .empirical import check_dtype, empirical, functional_forward
from .network import (
    ActivationLayers,
    NetworkDesign,
    ResidualBlock,
    as_design,
    compose_block,
)

__all__ = [
    "BlockMoments",
    "TorchLayers",
    "build_network",
    "sample_block_moments",
    "sample_input",
    "sample_spectrum",
]


def _haar_orthogonal(n: int, gen: torch.Generator) -> torch.Tensor:
    return nn.init.orthogonal_(torch.empty(n, n, dtype=torch.float64), generator=gen)


class TorchLayers:
    """The layers of a design's block as float64 ``torch.nn`` modules, weights from ``gen``."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen

    def layer(self, design: NetworkDesign) -> nn.Module:
        w, gen = design.width, self.gen
        if design.architecture == "cnn":
            conv = nn.Conv2d(
                w, w, 3, padding=1, padding_mode="circular", bias=False, dtype=torch.float64
            )
            with torch.no_grad():
                if design.init == "gaussian":
                    conv.weight.normal_(0.0, design.gain / math.sqrt(w * 9), generator=gen)
                else:  # delta-orthogonal: only the centre tap is non-zero
                    conv.weight.zero_()
                    conv.weight[:, :, 1, 1] = design.gain * _haar_orthogonal(w, gen)
            return conv
        linear = nn.Linear(w, w, bias=False, dtype=torch.float64)
        with torch.no_grad():
            if design.init == "gaussian":
                linear.weight.normal_(0.0, design.gain / math.sqrt(w), generator=gen)
            else:
                linear.weight.copy_(design.gain * _haar_orthogonal(w, gen))
        return linear

    def norm(self, design: NetworkDesign) -> nn.Module:
        bn = nn.BatchNorm2d if design.architecture == "cnn" else nn.BatchNorm1d
        return bn(design.width, dtype=torch.float64)

    def activation(self, layers: ActivationLayers, design: NetworkDesign) -> nn.Module:
        return layers.torch(design.slope) if layers.sloped else layers.torch()

    def serial(self, parts: Sequence[nn.Module]) -> nn.Module:
        return nn.Sequential(*parts)

    def residual(self, branch: nn.Module, design: NetworkDesign) -> nn.Module:
        return ResidualBlock(branch, design.residual_scale)


def build_network(
    design: NetworkDesign | Mapping[str, Any],
    width: int | None = None,
    depth: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> nn.Sequential:
    """Draw one random network of ``design``.

    Weights are drawn in float64 on the CPU, so a seed gives the same network on every device.

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields.
    width, depth : int, optional
        Override the design's fields.
    seed, generator : optional
        Source of the weights (give at most one; neither draws fresh entropy).
    dtype : torch.dtype
        Of the returned network (default float64).
    device : str or torch.device, optional
        Where the network lives: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None follows
        ``TOOLKIT_DEVICE`` (default ``"auto"``: the GPU when torch sees one, else the CPU),
        see :func:`toolkit._backend.resolve_device`.  CUDA where torch has none is a
        ValueError.

    Returns
    -------
    torch.nn.Sequential
        ``Sequential(OrderedDict(block0=..., ...))`` in training mode.

    Examples
    --------
    >>> net = build_network(NetworkDesign("mlp", width=8, depth=2), seed=0, device="cpu")
    >>> x = torch.randn(3, 8, dtype=torch.float64)
    >>> [name for name, _ in net.named_children()], net(x).shape
    (['block0', 'block1'], torch.Size([3, 8]))
    """
    design = as_design(design, width=width, depth=depth)
    dev = resolve_device(device)
    dtype = _check_float_dtype(dtype)
    layers = TorchLayers(make_generator(seed, generator, cpu=True))
    blocks = OrderedDict((f"block{i}", compose_block(design, layers)) for i in range(design.depth))
    return nn.Sequential(blocks).to(device=dev, dtype=dtype)


def sample_input(
    design: NetworkDesign | Mapping[str, Any],
    batch: int,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    *,
    width: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A standard-normal input batch for networks of ``design``.

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields.
    batch : int
        Samples, ``>= 1``.
    seed, generator : optional
        Source of the input (give at most one; neither draws fresh entropy).
    width : int, optional
        Overrides the design's width.
    dtype : torch.dtype
        Default float64 (drawn in float64 on the CPU, then cast).
    device : str or torch.device, optional
        Where the batch lives: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None follows
        ``TOOLKIT_DEVICE`` (default ``"auto"``: the GPU when torch sees one, else the CPU),
        see :func:`toolkit._backend.resolve_device`.  CUDA where torch has none is a
        ValueError.

    Returns
    -------
    torch.Tensor
        ``[batch, width]``, or ``[batch, width, s, s]`` for ``"cnn"`` (``s = image_size``).

    Examples
    --------
    >>> sample_input(NetworkDesign("cnn", width=4, image_size=5), 2, seed=0).shape
    torch.Size([2, 4, 5, 5])
    """
    design = as_design(design, width=width)
    batch = check_int("batch", batch, 1)
    dev = resolve_device(device)
    dtype = _check_float_dtype(dtype)
    gen = make_generator(seed, generator, cpu=True)
    shape = (batch, design.width) + (
        (design.image_size,) * 2 if design.architecture == "cnn" else ()
    )
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device=dev, dtype=dtype)


def _check_float_dtype(dtype: Any) -> torch.dtype:
    checked = check_dtype("dtype", dtype)
    if checked is None:
        raise TypeError("dtype must be a floating torch.dtype, got None")
    return checked


def _progress(progress: Callable[[int, int], Any] | bool | None, total: int, desc: str):
    """A ``step(done)`` callback from a user callable, ``True`` (a tqdm bar) or ``None``."""
    if callable(progress):
        return lambda done: progress(done, total)
    if progress:
        bar = tqdm(total=total, desc=desc, leave=False)

        def step(done: int) -> None:
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return step
    return lambda done: None


def _same_sample(f: Callable, x: torch.Tensor, b: int) -> Callable:
    """``x_b -> f(x with row b replaced)[b]``: the diagonal block of the batch Jacobian."""

    def g(xb: torch.Tensor) -> torch.Tensor:
        return f(torch.cat([x[:b], xb[None], x[b + 1 :]]))[b]

    return g


def sample_spectrum(
    design: NetworkDesign | Mapping[str, Any],
    *,
    width: int | None = None,
    depth: int | None = None,
    samples: int = 8,
    inputs: int = 1,
    batch: int = 32,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], Any] | bool | None = None,
) -> np.ndarray:
    r"""Eigenvalues of :math:`J J^\top` of the whole network for random draws.

    For each of ``samples`` networks and each of ``inputs`` standard-normal
    inputs the full per-sample Jacobian ``J`` (``features x features``) is
    computed in float64 with ``torch.func.jacrev`` and :math:`JJ^\top` is
    diagonalized (eigenvalues clipped at 0 against round-off). With batch norm
    the network sees a batch of ``max(batch, inputs)`` samples and ``J`` is the
    diagonal (same-sample) block of the batch Jacobian.

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields.
    width, depth : int, optional
        Override the design's fields.
    samples : int
        Networks drawn, ``>= 1``.
    inputs : int
        Inputs per network whose Jacobian is diagonalized, ``>= 1``.
    batch : int
        Batch size seen by batch-norm networks (``>= 2`` there).
    seed, generator : optional
        Source of weights and inputs (give at most one).
    device : str or torch.device, optional
        Where the networks run: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None follows
        ``TOOLKIT_DEVICE`` (default ``"auto"``: the GPU when torch sees one, else the CPU),
        see :func:`toolkit._backend.resolve_device`.  CUDA where torch has none is a
        ValueError.
    progress : callable or bool, optional
        ``progress(done, total)`` after each network, or ``True`` for a tqdm bar.

    Returns
    -------
    numpy.ndarray
        Float64, shape ``[samples * inputs, features]``, each row sorted ascending
        (``.ravel()`` pools them). Its row means estimate :math:`m_1` and the means of
        squares :math:`m_2`.

    Examples
    --------
    >>> eig = sample_spectrum(NetworkDesign(width=64, depth=2, init="orthogonal",
    ...                                     activation="linear"), samples=1, seed=0)
    >>> bool(np.allclose(eig, 1.0))
    True
    """
    design = as_design(design, width=width, depth=depth)
    device = resolve_device(device)
    samples = check_int("samples", samples, 1)
    inputs = check_int("inputs", inputs, 1)
    batch = check_int("batch", batch, 2 if design.normalization == "batchnorm" else 1)
    gen = make_generator(seed, generator, cpu=True)
    n_batch = max(batch, inputs) if design.normalization == "batchnorm" else inputs
    feats = design.features
    chunk = max(1, (1 << 22) // (n_batch * feats))
    step = _progress(progress, samples, "spectrum")
    rows = []
    for s in range(samples):
        net = build_network(design, generator=gen, device=device)
        f = functional_forward(net, None)
        x = sample_input(design, n_batch, generator=gen, device=device)
        for b in range(inputs):
            jac = jacrev(_same_sample(f, x, b), chunk_size=chunk)(x[b]).reshape(feats, feats)
            eig = torch.linalg.eigvalsh(jac @ jac.T).clamp_min(0.0)
            rows.append(eig.cpu().numpy())
        step(s + 1)
    return np.stack(rows)


@dataclass(frozen=True)
class BlockMoments:
    r"""Measured Jacobian moments per block (index ``l`` = ``block{l}``), each of shape ``[depth]``.

    Standard errors are the spread over networks when ``samples >= 2``, else the probe
    standard error.

    Attributes
    ----------
    design : NetworkDesign
        The design measured.
    m1, m2, variance, normalized_variance : numpy.ndarray
        Means over the sampled networks of :math:`m_1`, :math:`m_2`, :math:`m_2-m_1^2` and
        :math:`m_2/m_1^2-1`; ``*_stderr`` their standard errors.
    q : numpy.ndarray
        The block input's second moment :math:`\mathbb E[h^2]`.
    total_m1, total_variance : numpy.ndarray or None
        The same for the prefix network ``block0 .. block{l}`` (``None`` unless
        ``cumulative``), with ``total_*_stderr``.
    samples : int
        Networks drawn.
    per_network : dict of str to numpy.ndarray
        The raw ``[samples, depth]`` arrays per field.
    """

    design: NetworkDesign
    m1: np.ndarray
    m1_stderr: np.ndarray
    m2: np.ndarray
    m2_stderr: np.ndarray
    variance: np.ndarray
    variance_stderr: np.ndarray
    normalized_variance: np.ndarray
    normalized_variance_stderr: np.ndarray
    q: np.ndarray
    total_m1: np.ndarray | None
    total_m1_stderr: np.ndarray | None
    total_variance: np.ndarray | None
    total_variance_stderr: np.ndarray | None
    samples: int
    per_network: dict[str, np.ndarray] = dataclasses.field(repr=False, compare=False)


def _mean_se(per_net: np.ndarray, probe_se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if per_net.shape[0] >= 2:
        return per_net.mean(0), per_net.std(0, ddof=1) / math.sqrt(per_net.shape[0])
    return per_net[0], probe_se[0]


def sample_block_moments(
    design: NetworkDesign | Mapping[str, Any],
    *,
    width: int | None = None,
    depth: int | None = None,
    samples: int = 4,
    batch: int = 16,
    probes: int = 16,
    cumulative: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], Any] | bool | None = None,
) -> BlockMoments:
    r"""Measure every block's Jacobian moments on ``samples`` random networks.

    Each network sees a standard-normal batch of ``batch`` inputs; every block
    is measured with :func:`~toolkit.isometry.empirical` (``probes``
    Hutchinson probes, float64) at the input it actually receives. With batch norm the
    measured :math:`m_1` carries the :math:`O(1/\text{batch})` cross-sample terms (see
    :func:`~toolkit.isometry.empirical`).

    Parameters
    ----------
    design : NetworkDesign or mapping
        The family of networks, or a mapping of its fields.
    width, depth : int, optional
        Override the design's fields.
    samples : int
        Networks drawn, ``>= 1``.
    batch : int
        Inputs per network (``>= 2`` with batch norm).
    probes : int
        Hutchinson probes per block, ``>= 1``.
    cumulative : bool
        Also measure the prefix networks (``total_*``), which shows how :math:`m_1` and the
        variance compose with depth; costs :math:`O(\text{depth}^2)` block evaluations per
        network.
    seed, generator : optional
        Source of weights, inputs and probes (give at most one).
    device : str or torch.device, optional
        Where the networks run: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None follows
        ``TOOLKIT_DEVICE`` (default ``"auto"``: the GPU when torch sees one, else the CPU),
        see :func:`toolkit._backend.resolve_device`.  CUDA where torch has none is a
        ValueError.
    progress : callable or bool, optional
        ``progress(done, total)`` after each network, or ``True`` for a tqdm bar.

    Returns
    -------
    BlockMoments

    Examples
    --------
    >>> res = sample_block_moments(NetworkDesign(width=64, depth=2, gain=2**0.5),
    ...                            samples=2, cumulative=False, seed=0)
    >>> res.m1.shape, bool(np.all(np.abs(res.m1 - 1) < 0.2))
    ((2,), True)
    """
    design = as_design(design, width=width, depth=depth)
    device = resolve_device(device)
    samples = check_int("samples", samples, 1)
    batch = check_int("batch", batch, 2 if design.normalization == "batchnorm" else 1)
    probes = check_int("probes", probes, 1)
    gen = make_generator(seed, generator, cpu=True)
    L = design.depth
    keys: tuple[str, ...] = ("m1", "m2", "variance", "normalized_variance", "q")
    keys += ("total_m1", "total_variance") if cumulative else ()
    raw = {k: np.full((samples, L), np.nan) for k in keys}
    se = {k: np.full((samples, L), np.nan) for k in keys}
    step = _progress(progress, samples, "networks")
    for s in range(samples):
        net = build_network(design, generator=gen, device=device)
        h = x0 = sample_input(design, batch, generator=gen, device=device)
        with torch.no_grad():
            for l, block in enumerate(net):
                est = empirical(block, h, probes, generator=gen)
                tot = (
                    est
                    if l == 0 or not cumulative
                    else empirical(net[: l + 1], x0, probes, generator=gen)
                )
                raw["q"][s, l] = float((h.double() ** 2).mean())
                for k in keys:
                    src, name = (tot, k[6:]) if k.startswith("total_") else (est, k)
                    if k != "q":
                        raw[k][s, l], se[k][s, l] = (
                            getattr(src, name),
                            getattr(src, f"{name}_stderr"),
                        )
                h = block(h)
        step(s + 1)
    fields: dict[str, Any] = {"total_m1": None, "total_m1_stderr": None, "total_variance": None}
    fields["total_variance_stderr"] = None
    for k in keys:
        fields[k], err = _mean_se(raw[k], se[k])
        if k != "q":
            fields[f"{k}_stderr"] = err
    return BlockMoments(design=design, samples=samples, per_network=raw, **fields)
