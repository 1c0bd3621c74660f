r"""Analyze a real model block by block: measured Jacobian moments beside the analytic prediction.

:func:`analyze` splits a model into blocks (the named children of the model, or the
model itself when it has none), captures every block's actual input with
forward hooks (one forward pass through ``torch.func.functional_call`` with
cloned buffers: the model's state is not modified), and for every block

* **measures** :math:`m_1 = \phi(JJ^\top)` and the variance
  :math:`m_2 - m_1^2` with :func:`~toolkit.isometry.empirical`
  (normalized by the block's output dimension), and
* **predicts** them with the analytic components of :mod:`toolkit.isometry` at the
  measured input second moment :math:`q = \mathbb E[h^2]`, for the layers it
  recognizes (see :func:`predict_block`). Other blocks are measured only.

The prediction uses the *actual* weight scale: an ``nn.Linear`` with weight
``W`` (``out x in``) becomes ``Linear(in, out, gain=g)`` with
:math:`g^2 = \text{in}\cdot\overline{W^2}` (Marchenko-Pastur, valid for any i.i.d.
zero-mean weights), or an orthogonal ``Linear`` with
:math:`g^2 = \lVert W\rVert_F^2/\min(\text{in}, \text{out})` when ``W`` is (semi-)orthogonal.
Trained weights are not i.i.d.; there the gap between the two columns shows how
far the network has moved from the random-matrix model.

Example
-------
>>> import torch
>>> from toolkit.isometry import analyze
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> mlp = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
>>> table = analyze(mlp, torch.randn(16, 256), probes=16, seed=0)
>>> [row.name for row in table], table["1"].kind
(['0', '1', '2'], 'ReLU')
>>> abs(table["1"].measured.m1 - table["1"].predicted.m1) < 0.05
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..._checks import check_flag, check_int, make_generator
from ..engine import activations as act
from ..engine.blocks import Block, Identity, Residual, Serial
from ..engine.linear import AvgPool, Conv2d, Linear
from ..engine.normalization import BatchNorm
from .empirical import (
    check_batch,
    check_dtype,
    empirical,
    functional_forward,
)
from .network import ACTIVATION_LAYERS, ResidualBlock
from .table import AnalysisRow, AnalysisTable

__all__ = ["analyze", "predict_block"]

_ORTHO_MAX = 2048  # orthogonality is tested for min(in, out) up to this size
_ORTHO_TOL = 1e-4


# ------------------------------------------------------------------ recognition


def _gram_orthogonal(w: torch.Tensor) -> float | None:
    """``g^2`` if ``w`` (``out x rest``) is ``g`` times a semi-orthogonal matrix, else ``None``."""
    w = w.detach().double()
    if min(w.shape) > _ORTHO_MAX:
        return None
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    c = float(gram.diagonal().mean())
    if c <= 0:
        return None
    off = (gram - c * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)).abs().max()
    return c if float(off) <= _ORTHO_TOL * c else None


# nn classes modelled by a component without parameters: the design activations' own
# table, plus the few layers no design uses.
_PARAMETERLESS: dict[type[nn.Module], Callable[[], Block]] = {
    **{a.torch: a.analytic for a in ACTIVATION_LAYERS.values() if a is not None and not a.sloped},
    nn.Sigmoid: act.Sigmoid,
    nn.Identity: Identity,
    nn.Flatten: Identity,
}


def predict_block(module: nn.Module) -> tuple[Block | None, str]:
    r"""The :mod:`toolkit.isometry` block modelling ``module``, or ``None``, and a note.

    Recognized: ``nn.Linear``; ``nn.Conv2d`` (stride 1, no groups or dilation;
    circular padding assumed); ``nn.ReLU``, ``nn.LeakyReLU`` (slope in [0, 1]),
    ``nn.PReLU`` (one slope), ``nn.Tanh``, ``nn.Sigmoid``, ``nn.GELU``, ``nn.SELU``,
    ``nn.Hardtanh``; ``nn.Dropout`` (identity in eval mode); ``nn.BatchNorm1d/2d``
    (large-batch model, its ``gamma`` taken as the RMS of the weight; :func:`analyze`
    evaluates it at the mean channel variance it divides by: the batch variance in
    training mode, ``running_var`` in eval mode);
    ``nn.AvgPool2d`` (no padding); ``nn.Identity``, ``nn.Flatten``; ``nn.Sequential``
    of recognized blocks (``Serial``) and
    :class:`~toolkit.isometry.ResidualBlock` (``Residual``).

    The weight scale is read from the weights: :math:`g^2 = \text{in}\cdot\overline{W^2}` for
    i.i.d. weights, or :math:`\lVert W\rVert_F^2/\min(\text{in}, \text{out})` when ``W`` is
    (semi-)orthogonal.

    Parameters
    ----------
    module : torch.nn.Module
        The layer or block to model.

    Returns
    -------
    block : Block or None
        The analytic model, ``None`` if ``module`` is not recognized.
    note : str
        Why it is not recognized (empty otherwise).

    Examples
    --------
    >>> from torch import nn
    >>> predict_block(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))[0]  # doctest: +ELLIPSIS
    Serial([Linear(4, 4, init='gaussian', gain=...), Tanh()])
    >>> predict_block(nn.Conv2d(4, 4, 3, stride=2))
    (None, 'only stride 1, groups 1, dilation 1 convolutions are modelled')
    """
    m = module
    if not isinstance(m, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(m).__name__}")
    bad = [n for n, p in m.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        return None, f"non-finite parameter(s): {', '.join(bad)}"
    if isinstance(m, nn.Sequential):
        parts = [predict_block(c) for c in m]
        missing = [f"{type(c).__name__}: {note}" for c, (b, note) in zip(m, parts) if b is None]
        if missing or not parts:
            return None, "unrecognized part(s): " + "; ".join(missing) if missing else "empty"
        try:
            return Serial([b for b, _ in parts if b is not None]), ""
        except ValueError as exc:  # e.g. widths that do not chain
            return None, str(exc)
    if isinstance(m, ResidualBlock):
        branch, note = predict_block(m.branch)
        if branch is None:
            return None, f"branch: {note}"
        return Residual(branch, m.scale), ""
    if isinstance(m, nn.Linear):
        w = m.weight
        g2 = _gram_orthogonal(w)
        if g2 is not None:
            return Linear(m.in_features, m.out_features, "orthogonal", math.sqrt(g2)), ""
        g2 = m.in_features * float((w.detach().double() ** 2).mean())
        return Linear(m.in_features, m.out_features, "gaussian", math.sqrt(g2)), ""
    if isinstance(m, nn.Conv2d):
        if m.stride != (1, 1) or m.groups != 1 or m.dilation != (1, 1):
            return None, "only stride 1, groups 1, dilation 1 convolutions are modelled"
        w = m.weight.detach().double()
        kh, kw = m.kernel_size
        centre = w[:, :, kh // 2, kw // 2]
        others = w.clone()
        others[:, :, kh // 2, kw // 2] = 0
        g2 = _gram_orthogonal(centre) if not others.any() else None
        if g2 is not None:
            return Conv2d(
                m.in_channels, m.out_channels, (kh, kw), "delta_orthogonal", math.sqrt(g2)
            ), ""
        g2 = _gram_orthogonal(w.reshape(w.shape[0], -1))
        if g2 is not None and w.shape[0] <= w[0].numel():
            return Conv2d(m.in_channels, m.out_channels, (kh, kw), "orthogonal", math.sqrt(g2)), ""
        g2 = w[0].numel() * float((w**2).mean())
        return Conv2d(m.in_channels, m.out_channels, (kh, kw), "gaussian", math.sqrt(g2)), ""
    if type(m) in _PARAMETERLESS:
        return _PARAMETERLESS[type(m)](), ""
    if isinstance(m, nn.LeakyReLU):
        if not 0 <= m.negative_slope <= 1:
            return None, f"negative_slope {m.negative_slope} outside [0, 1]"
        return act.LeakyReLU(m.negative_slope), ""
    if isinstance(m, nn.PReLU):
        if m.weight.numel() != 1 or not 0 <= float(m.weight) <= 1:
            return None, "only a single PReLU slope in [0, 1] is modelled"
        return act.PReLU(float(m.weight)), ""
    if isinstance(m, nn.Hardtanh):
        return act.HardTanh(m.min_val, m.max_val), ""
    if isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
        return (act.Dropout(m.p) if m.training and m.p > 0 else Identity()), ""
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        gamma = math.sqrt(float((m.weight.detach().double() ** 2).mean())) if m.affine else 1.0
        return BatchNorm(gamma=gamma, eps=m.eps), ""
    if isinstance(m, nn.AvgPool2d):
        if m.padding not in (0, (0, 0)):
            return None, "padded average pooling is not modelled"
        return AvgPool(m.kernel_size, m.stride), ""
    return None, f"no analytic model for {type(m).__name__}"


# ------------------------------------------------------------------ analysis


def _row(
    name: str,
    module: nn.Module,
    h: Any,
    probes: int,
    gen: torch.Generator,
    dtype: torch.dtype | None,
) -> AnalysisRow:
    kind = type(module).__name__
    if not (isinstance(h, torch.Tensor) and h.is_floating_point() and h.ndim >= 2):
        return AnalysisRow(
            name,
            kind,
            math.nan,
            None,
            None,
            None,
            "not measured: input is not a single batched floating tensor",
        )
    q = float((h.detach().double() ** 2).mean())
    notes = []
    try:
        measured = empirical(module, h, probes, generator=gen, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        measured = None
        notes.append(f"not measured: {exc}")
    model, note = predict_block(module)
    predicted = None
    q_model = q
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and model is not None:
        # the model's q is the variance the layer divides by (batch or running)
        if module.training or module.running_var is None:
            dims = [0, *range(2, h.ndim)]
            q_model = float(h.detach().double().var(dims, unbiased=False).mean())
        else:
            q_model = float(module.running_var.double().mean())
    if model is not None:
        try:
            predicted = model.moments(order=2, q=q_model)
        except (TypeError, ValueError, NotImplementedError) as exc:
            note = f"prediction failed: {exc}"
    if note:
        notes.append(note)
    if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d) and predicted is not None:
        notes.append("batch-statistic terms O(1/batch) are in the measurement, not the model")
    return AnalysisRow(name, kind, q, model, predicted, measured, "; ".join(notes))


def analyze(
    module: nn.Module,
    x: torch.Tensor,
    probes: int = 32,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    *,
    total: bool = True,
    dtype: torch.dtype | None = torch.float64,
) -> AnalysisTable:
    r"""Measure and predict the Jacobian moments of every block of ``module`` at ``x``.

    Parameters
    ----------
    module : torch.nn.Module
        The model; its named children are the blocks (the model itself if it has none).
        Each child should take one batched tensor and be called once per forward; children
        with other inputs are listed but not measured. Its mode is respected.
    x : torch.Tensor
        Input batch ``[B, ...]`` (floating).
    probes : int
        Hutchinson probes per block, passed to :func:`~toolkit.isometry.empirical`.
    seed, generator : optional
        Source of the probes (give at most one); one generator drives all blocks.
    total : bool
        Also measure (and, if recognized, predict) the whole model as ``table.total``.
    dtype : torch.dtype or None
        Computation dtype, passed to :func:`~toolkit.isometry.empirical`.

    Returns
    -------
    AnalysisTable
        One :class:`AnalysisRow` per block, in forward order. ``q`` is the block's measured
        input second moment :math:`\mathbb E[h^2]`; the predicted moments are those of
        :func:`predict_block`'s model at that ``q``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments (``x`` with NaN or Inf entries among them), or when ``x`` cannot
        be passed through ``module``.  A block whose own input or output is not finite is
        listed with a "not measured" note instead of moments.

    Examples
    --------
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU())
    >>> table = analyze(mlp, torch.randn(8, 64, generator=torch.Generator().manual_seed(0)),
    ...                 probes=8, seed=0)
    >>> [row.kind for row in table], table.total.kind
    (['Linear', 'ReLU'], 'Sequential')
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_batch("x", x)
    probes = check_int("probes", probes, 1)
    check_dtype("dtype", dtype)
    check_flag("total", total)
    gen = make_generator(seed, generator)
    children = list(module.named_children()) or [(type(module).__name__, module)]
    inputs: dict[str, Any] = {}
    order: list[str] = []

    def hook(name: str):
        def capture(_mod: nn.Module, args: tuple) -> None:
            if name not in inputs:
                order.append(name)
                one = len(args) == 1 and isinstance(args[0], torch.Tensor)
                inputs[name] = args[0].detach() if one else args

        return capture

    handles = [child.register_forward_pre_hook(hook(name)) for name, child in children]
    xd = x.detach().to(dtype) if dtype is not None else x.detach()
    try:
        with torch.no_grad():
            functional_forward(module, dtype)(xd)
    except Exception as exc:
        raise ValueError(
            f"x of shape {tuple(x.shape)} could not be passed through "
            f"{type(module).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(children)
    rows = [_row(name, modules[name], inputs[name], probes, gen, dtype) for name in order]
    rows += [
        AnalysisRow(
            name,
            type(child).__name__,
            math.nan,
            None,
            None,
            None,
            "not measured: not called in the forward pass",
        )
        for name, child in children
        if name not in inputs
    ]
    whole = _row("total", module, x, probes, gen, dtype) if total else None
    return AnalysisTable(rows, whole)
