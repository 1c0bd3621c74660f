r"""Empirical moments of a real network block's input-output Jacobian.

For a block :math:`f` acting sample-wise on a batch ``x`` of shape ``[B, ...]``
let :math:`J_b = \partial f(x)_b / \partial x_b` be the Jacobian of sample
``b`` (``out x in``, with ``out`` and ``in`` the per-sample numbers of output and
input elements). Following Chen et al. (TPAMI 2020) with the normalized trace
:math:`\phi(A) = \mathbb{E}[\operatorname{tr} A] / \dim A`,

.. math::

    m_1 = \phi(J J^\top) = \frac{1}{B}\sum_b \frac{\operatorname{tr}(J_b J_b^\top)}{\text{out}},
    \qquad
    m_2 = \phi\big((J J^\top)^2\big) = \frac{1}{B}\sum_b
          \frac{\operatorname{tr}\big((J_b J_b^\top)^2\big)}{\text{out}} .

**Normalization is by the output dimension** (:math:`J J^\top` is ``out x out``).
For a square Jacobian this equals normalizing :math:`J^\top J` by ``in``; for a
rectangular one the two differ by the factor ``in / out`` (zero eigenvalues).

Both are estimated with Hutchinson probes :math:`v` in output space with
:math:`\mathbb{E}[v v^\top] = I` (Rademacher or Gaussian):

.. math::

    \mathbb{E}_v \lVert J^\top v \rVert^2 = \operatorname{tr}(J J^\top), \qquad
    \mathbb{E}_v \lVert J J^\top v \rVert^2 = \operatorname{tr}\big((J J^\top)^2\big).

:math:`u = J^\top v` is one reverse-mode product (``torch.func.vjp``);
:math:`J u` is the reverse-mode product of the (linear) map :math:`v \mapsto J^\top v`,
so everything derives from **one** forward pass, vectorized over the probes
with ``torch.func.vmap`` (with a per-probe loop as fallback for modules that
``vmap`` cannot batch). One forward pass means stochastic layers (dropout in
training mode) are seen with a single, consistent mask.

The module's mode is respected (``train()`` / ``eval()`` are not changed): call
``module.eval()`` first if you want inference behaviour. Buffers are cloned
inside the functional call, so train-mode batch norm does **not** update the
module's running statistics. All Hutchinson products are taken on the whole
batch at once; for a module that acts sample-wise (the usual case, including
eval-mode batch norm) this is exactly the per-sample average above. For a
module that couples samples (train-mode batch norm) the estimate is that of the
batch Jacobian normalized per sample, which includes the :math:`O(1/B)`
cross-sample terms.

Example
-------
>>> import torch
>>> from toolkit.isometry import empirical
>>> lin = torch.nn.Linear(256, 256, bias=False)
>>> _ = torch.nn.init.orthogonal_(lin.weight)
>>> est = empirical(lin, torch.randn(8, 256), probes=16, seed=0)
>>> abs(est.m1 - 1) < 1e-5, abs(est.variance) < 1e-5   # orthogonal: JJ^T = I
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vjp, vmap

from ..._checks import (
    check_choice,
    check_finite_tensor,
    check_int,
    check_tensor,
    make_generator,
)
from ..engine.moments import Moments

__all__ = ["EmpiricalMoments", "empirical"]

_DISTRIBUTIONS = ("rademacher", "gaussian")
# Elements of probe-batched activations held at once by the vectorized path.
_CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class EmpiricalMoments:
    r"""Estimated Jacobian moments of one block at one batch of inputs, from :func:`empirical`.

    Attributes
    ----------
    m1, m2 : float
        :math:`\phi(JJ^\top)` and :math:`\phi((JJ^\top)^2)`, normalized by the output dimension.
    variance : float
        :math:`m_2 - m_1^2`, the variance of the eigenvalue distribution of :math:`JJ^\top`.
    normalized_variance : float
        :math:`m_2/m_1^2 - 1`.
    m1_stderr, m2_stderr, variance_stderr, normalized_variance_stderr : float
        Standard errors of the Hutchinson estimate given ``x``; those of ``variance`` and
        ``normalized_variance`` use the delta method.
    probes, batch, in_dim, out_dim : int
        Probes, samples, and per-sample input and output elements.
    m1_samples, m2_samples : numpy.ndarray
        The per-probe, per-sample terms, shape ``[probes, batch]``.
    """

    m1: float
    m2: float
    m1_stderr: float
    m2_stderr: float
    variance: float
    variance_stderr: float
    normalized_variance: float
    normalized_variance_stderr: float
    probes: int
    batch: int
    in_dim: int
    out_dim: int
    m1_samples: np.ndarray = field(repr=False, compare=False)
    m2_samples: np.ndarray = field(repr=False, compare=False)

    def to_moments(self) -> Moments:
        """The estimate as :class:`~toolkit.isometry.Moments` ``(m1, m2)``, to compare.

        Examples
        --------
        >>> est = empirical(torch.nn.Identity(), torch.randn(2, 8), probes=2, seed=0)
        >>> est.to_moments()
        Moments(m1=1, m2=1, variance=0)
        """
        return Moments(self.m1, self.m2)

    def __str__(self) -> str:
        return (
            f"m1 = {self.m1:.6g} ± {self.m1_stderr:.2g}, "
            f"m2 = {self.m2:.6g} ± {self.m2_stderr:.2g}, "
            f"var = {self.variance:.6g} ± {self.variance_stderr:.2g} "
            f"({self.probes} probes x {self.batch} samples, {self.out_dim}x{self.in_dim})"
        )


def check_batch(name: str, x: Any) -> torch.Tensor:
    """``x`` if it is a finite floating tensor ``[B, ...]``, ``B >= 1``, else an error naming it.

    NaN or Inf inputs are refused: a ReLU's derivative at NaN is 0, so they would give
    finite moments that look valid.
    """
    check_tensor(name, x, min_ndim=2, nonempty=True)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return check_finite_tensor(name, x)


def check_dtype(name: str, dtype: Any) -> torch.dtype | None:
    """``dtype`` if it is a floating ``torch.dtype`` or ``None``, else a TypeError naming it."""
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"{name} must be a floating torch.dtype or None, got {dtype!r}")
    return dtype


def functional_forward(
    module: nn.Module, dtype: torch.dtype | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> module(x)`` through ``torch.func.functional_call`` with cast, cloned state.

    Parameters and floating buffers are cast to ``dtype`` (unless ``None``);
    buffers are cloned inside every call so in-place updates (batch-norm running
    statistics) never reach ``module``.
    """

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t.detach()
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    params = {k: cast(p) for k, p in module.named_parameters()}
    buffers = {k: cast(b) for k, b in module.named_buffers()}

    def f(x: torch.Tensor) -> torch.Tensor:
        state = dict(params)
        state.update({k: b.clone() for k, b in buffers.items()})
        return functional_call(module, state, (x,))

    return f


def _stats(a: np.ndarray, c: np.ndarray) -> tuple[float, ...]:
    """Means, standard errors and delta-method errors from iid pairs (a_k, c_k)."""
    k = a.size
    m1, m2 = float(a.mean()), float(c.mean())
    var = m2 - m1 * m1
    with np.errstate(divide="ignore", invalid="ignore"):
        nvar = m2 / (m1 * m1) - 1.0 if m1 != 0 else math.nan
    if k < 2:
        return m1, m2, math.nan, math.nan, var, math.nan, nvar, math.nan
    cov = np.cov(np.stack([a, c]), ddof=1) / k
    g_var = np.array([-2.0 * m1, 1.0])
    se_var = math.sqrt(max(float(g_var @ cov @ g_var), 0.0))
    if m1 != 0:
        g_n = np.array([-2.0 * m2 / m1**3, 1.0 / m1**2])
        se_n = math.sqrt(max(float(g_n @ cov @ g_n), 0.0))
    else:
        se_n = math.nan
    return m1, m2, math.sqrt(cov[0, 0]), math.sqrt(cov[1, 1]), var, se_var, nvar, se_n


def empirical(
    module: nn.Module,
    x: torch.Tensor,
    probes: int = 32,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    *,
    distribution: str = "rademacher",
    dtype: torch.dtype | None = torch.float64,
    chunk_size: int | None = None,
) -> EmpiricalMoments:
    r"""Estimate :math:`m_1=\phi(JJ^\top)` and :math:`m_2=\phi((JJ^\top)^2)` of ``module`` at ``x``.

    Parameters
    ----------
    module : torch.nn.Module
        Maps ``[B, ...]`` to ``[B, ...]`` sample-wise. Its train/eval mode is respected; its
        state is not modified.
    x : torch.Tensor
        Input batch, floating, shape ``[B, ...]`` (``B >= 1``, ``x.ndim >= 2``). The
        computation runs on ``x.device``.
    probes : int
        Hutchinson probes per sample (``>= 1``); the cost is one forward pass plus
        ``2 * probes`` vectorized backward passes.
    seed, generator : optional
        Source of the probes (give at most one; neither draws fresh entropy).
    distribution : {"rademacher", "gaussian"}
        The probe distribution (Rademacher has the lower variance).
    dtype : torch.dtype or None
        The parameters, buffers and ``x`` are cast to this dtype for the computation
        (default float64); ``None`` keeps them as they are.
    chunk_size : int, optional
        Probes vectorized at once (default: as many as fit ~8M elements).

    Returns
    -------
    EmpiricalMoments
        Standard errors measure the probe noise given ``x``: from the spread of the
        ``probes`` per-probe batch averages when ``probes >= 2``; with one probe, from the
        spread over the ``B`` samples (conservative: it also includes the variation between
        inputs).

    Raises
    ------
    TypeError, ValueError
        For bad arguments (``x`` with NaN or Inf entries among them), or a module whose
        output is not one finite tensor ``[B, ...]``.

    Examples
    --------
    >>> relu_block = torch.nn.Sequential(torch.nn.Linear(512, 512, bias=False), torch.nn.ReLU())
    >>> _ = torch.nn.init.normal_(relu_block[0].weight, std=(2 / 512) ** 0.5)
    >>> est = empirical(relu_block, torch.randn(16, 512), probes=32, seed=0)
    >>> abs(est.m1 - 1) < 0.1, abs(est.variance - 2) < 0.3   # Kaiming ReLU: m1 = 1, var = 2
    (True, True)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    check_batch("x", x)
    probes = check_int("probes", probes, 1)
    check_choice("distribution", distribution, _DISTRIBUTIONS)
    check_dtype("dtype", dtype)
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, 1)
    gen = make_generator(seed, generator)

    xd = x.detach().to(dtype) if dtype is not None else x.detach()
    f = functional_forward(module, dtype)
    try:
        out, vjp_fn = vjp(f, xd)[:2]
    except Exception as exc:  # the module rejected the input: name the argument
        raise ValueError(
            f"x of shape {tuple(x.shape)} and dtype {xd.dtype} could not be passed through "
            f"{type(module).__name__}: {type(exc).__name__}: {exc}"
            + (
                " (try dtype=None if the module builds tensors of a fixed dtype)"
                if dtype is not None
                else ""
            )
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"module must return a single tensor, got {type(out).__name__}")
    if not out.is_floating_point() or out.ndim < 1 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"module output must be a floating tensor [B, ...] with B = {x.shape[0]} (batch of x), "
            f"got shape {tuple(out.shape)} and dtype {out.dtype}"
        )
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise ValueError(
            f"module output at x must be finite, got {bad} NaN or infinite entries of "
            f"{out.numel()} (check the module's parameters)"
        )
    batch = int(x.shape[0])
    in_dim, out_dim = int(xd[0].numel()), int(out[0].numel())

    # probes in output space, drawn on the generator's device then moved
    shape = (probes, *out.shape)
    if distribution == "rademacher":
        v = torch.randint(0, 2, shape, generator=gen, device=gen.device).to(out.dtype) * 2 - 1
    else:
        v = torch.randn(shape, generator=gen, device=gen.device, dtype=out.dtype)
    v = v.to(out.device)

    def jt_and_jjt(vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, vjp_lin = vjp(lambda w: vjp_fn(w)[0], vi)[:2]  # u = J^T v (linear in v)
        return u, vjp_lin(u)[0]  # J u: transpose of the linear map v -> J^T v

    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // max(1, batch * max(in_dim, out_dim)))
    try:
        u, w = vmap(jt_and_jjt, chunk_size=min(chunk_size, probes))(v)
    except Exception:  # ops without batching rules: loop over the probes
        pairs = [jt_and_jjt(vi) for vi in v]
        u = torch.stack([p[0] for p in pairs])
        w = torch.stack([p[1] for p in pairs])
    s1 = (u.reshape(probes, batch, -1) ** 2).sum(-1).detach().double().cpu().numpy() / out_dim
    s2 = (w.reshape(probes, batch, -1) ** 2).sum(-1).detach().double().cpu().numpy() / out_dim

    if probes >= 2:
        a, c = s1.mean(axis=1), s2.mean(axis=1)  # iid over probes given x
    else:
        a, c = s1[0], s2[0]  # one probe: spread over samples (conservative)
    m1, m2, se1, se2, var, se_var, nvar, se_n = _stats(a, c)
    return EmpiricalMoments(
        m1=m1,
        m2=m2,
        m1_stderr=se1,
        m2_stderr=se2,
        variance=var,
        variance_stderr=se_var,
        normalized_variance=nvar,
        normalized_variance_stderr=se_n,
        probes=probes,
        batch=batch,
        in_dim=in_dim,
        out_dim=out_dim,
        m1_samples=s1,
        m2_samples=s2,
    )
