r"""Multi-step LIF and IF neurons with surrogate gradients (the torch reference path).

A leaky integrate-and-fire neuron integrates its input ``X[t]`` into a membrane potential,
fires a spike when the potential reaches the threshold, and resets.  Over ``T`` steps:

* charge, with ``decay_input``: :math:`H[t] = V[t-1] + (X[t] - (V[t-1] - V_{reset}))/\tau`;
  without: :math:`H[t] = V[t-1] - (V[t-1] - V_{reset})/\tau + X[t]`;
* fire: :math:`S[t] = \Theta(H[t] - V_{th})` (a spike when :math:`H[t] \ge V_{th}`);
* reset, hard: :math:`V[t] = H[t](1 - S[t]) + V_{reset} S[t]`; soft (``v_reset=None``):
  :math:`V[t] = H[t] - V_{th} S[t]` (the charge then leaks towards 0).

:math:`\Theta` has a zero derivative almost everywhere, so backpropagation through time (BPTT)
replaces it by a surrogate :math:`\sigma'(H - V_{th})` (see :data:`SURROGATES`).  The IF neuron
is the limit without leak (:math:`1/\tau \to 0` with the input not decayed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from .._checks import (
    check_choice,
    check_finite_tensor,
    check_flag,
    check_positive,
    check_real,
    check_tensor,
)
from .._dispatch import operation

__all__ = [
    "SURROGATES",
    "IFNeuron",
    "LIFNeuron",
    "LIFParams",
    "lif_multistep",
    "surrogate_grad",
]

Surrogate = Literal["atan", "sigmoid", "rectangular", "triangle"]

#: Surrogate name -> its default ``alpha`` (the width/sharpness parameter).
SURROGATES: dict[str, float] = {"atan": 2.0, "sigmoid": 4.0, "rectangular": 1.0, "triangle": 1.0}

_DTYPES = (torch.float16, torch.float32, torch.float64)


def surrogate_grad(u: torch.Tensor, surrogate: str = "atan", alpha: float | None = None):
    r"""The surrogate derivative :math:`\sigma'(u)` at :math:`u = H - V_{th}`.

    * ``atan``: :math:`(\alpha/2) / (1 + (\pi\alpha u/2)^2)`, default :math:`\alpha = 2`;
    * ``sigmoid``: :math:`\alpha\, s(\alpha u)(1 - s(\alpha u))`, default :math:`\alpha = 4`;
    * ``rectangular``: :math:`1\{|u| < a/2\}/a`, default :math:`a = 1`;
    * ``triangle``: :math:`\max(0, \gamma - |u|)/\gamma^2`, default :math:`\gamma = 1`.

    The last two are exactly zero away from the threshold, which makes the backward pass sparse.

    Elementwise on any shape: NaN gives NaN, and :math:`\pm\infty` gives 0 (infinitely far
    from the threshold).

    Parameters
    ----------
    u : torch.Tensor
        Distance of the membrane potential from the threshold, floating point.
    surrogate : str
        One of :data:`SURROGATES`.
    alpha : float, optional
        The parameter; the surrogate's default when None.

    Returns
    -------
    torch.Tensor
        :math:`\sigma'(u)`, same shape and dtype as ``u``.

    Examples
    --------
    >>> surrogate_grad(torch.tensor([0.0, 0.25, 2.0]), "triangle")
    tensor([1.0000, 0.7500, 0.0000])
    """
    check_tensor("u", u, dtypes=(*_DTYPES, torch.bfloat16))
    check_choice("surrogate", surrogate, tuple(SURROGATES))
    a = SURROGATES[surrogate] if alpha is None else check_positive("alpha", alpha)
    if surrogate == "atan":
        return (a / 2) / (1 + (math.pi / 2 * a * u) ** 2)
    if surrogate == "sigmoid":
        s = torch.sigmoid(a * u)
        return a * s * (1 - s)
    if surrogate == "rectangular":
        box = (u.abs() < a / 2).to(u.dtype) / a
        return torch.where(torch.isnan(u), u, box)  # NaN stays NaN, as for the others
    return torch.clamp(a - u.abs(), min=0) / a**2


@dataclass(frozen=True)
class LIFParams:
    """Checked neuron parameters, shared by the reference path and the kernels."""

    tau: float
    v_threshold: float
    v_reset: float | None
    surrogate: str
    alpha: float
    detach_reset: bool
    decay_input: bool

    @property
    def inv_tau(self) -> float:
        return 1.0 / self.tau

    @property
    def hard(self) -> bool:
        return self.v_reset is not None

    @property
    def v_rest(self) -> float:
        """The level the charge leaks towards: ``v_reset``, or 0 for the soft reset."""
        return 0.0 if self.v_reset is None else self.v_reset

    @classmethod
    def make(
        cls,
        tau: Any = 2.0,
        v_threshold: Any = 1.0,
        v_reset: Any = 0.0,
        surrogate: Any = "atan",
        alpha: Any = None,
        detach_reset: Any = False,
        decay_input: Any = True,
    ) -> LIFParams:
        # 1/tau is the leak: above 1 the potential would flip sign.  tau = inf is the IF neuron.
        if not (isinstance(tau, float) and tau == math.inf):
            tau = check_real("tau", tau, 1.0)
        elif decay_input is True:
            raise ValueError(
                "tau=inf divides the input by infinity with decay_input=True (the neuron would "
                "never charge); the IF neuron is tau=inf with decay_input=False"
            )
        vth = check_real("v_threshold", v_threshold)
        vr = None if v_reset is None else check_real("v_reset", v_reset)
        if vr is not None and vr >= vth:
            raise ValueError(
                f"v_reset must be below v_threshold, got v_reset={v_reset!r} and "
                f"v_threshold={v_threshold!r}"
            )
        if not isinstance(surrogate, str):
            raise TypeError(f"surrogate must be a str, got {surrogate!r}")
        check_choice("surrogate", surrogate, tuple(SURROGATES))
        a = SURROGATES[surrogate] if alpha is None else check_positive("alpha", alpha)
        return cls(
            tau=tau,
            v_threshold=vth,
            v_reset=vr,
            surrogate=surrogate,
            alpha=a,
            detach_reset=check_flag("detach_reset", detach_reset),
            decay_input=check_flag("decay_input", decay_input),
        )


class _SpikeFn(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, u, surrogate, alpha):
        ctx.save_for_backward(u)
        ctx.surrogate, ctx.alpha = surrogate, alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * surrogate_grad(u, ctx.surrogate, ctx.alpha), None, None


def _constants(p: LIFParams, dtype: torch.dtype) -> list[float]:
    """``1/tau``, the threshold and the rest level, rounded to the working dtype as the
    kernels round them."""
    t = torch.tensor([p.inv_tau, p.v_threshold, p.v_rest], dtype=torch.float64)
    return [float(v) for v in t.to(dtype).tolist()]


@operation
def _lif_op(
    x_seq: torch.Tensor, v0: torch.Tensor | None, v_start: float, p: LIFParams, membrane: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    # Half inputs are integrated in float32 (as the kernels do); the operations and their
    # order match kernels/lif.cu so that both paths fire the same spikes.
    work = torch.float32 if x_seq.dtype == torch.float16 else x_seq.dtype
    x = x_seq.to(work)
    inv_tau, vth, v_rest = _constants(p, work)
    v = torch.full_like(x[0], v_start) if v0 is None else v0.to(work).expand_as(x[0])
    spikes, trace = [], []
    for t in range(x.shape[0]):
        if p.decay_input:
            h = v + (x[t] - (v - v_rest)) * inv_tau
        else:
            h = v - (v - v_rest) * inv_tau + x[t]
        s = _SpikeFn.apply(h - vth, p.surrogate, p.alpha)
        sr = s.detach() if p.detach_reset else s
        v = h * (1 - sr) + v_rest * sr if p.hard else h - vth * sr
        spikes.append(s)
        if membrane:
            trace.append(v)
    out = torch.stack(spikes).to(x_seq.dtype)
    return out, (torch.stack(trace).to(x_seq.dtype) if membrane else None)


def lif_multistep(
    x_seq: torch.Tensor,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = False,
    decay_input: bool = True,
    v_init: float | torch.Tensor | None = None,
    *,
    return_membrane: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    r"""Run LIF neurons over ``T`` steps: input currents ``[T, ...]`` -> spikes ``[T, ...]``.

    See the module docstring for the charge, fire and reset equations.  The backward pass is
    BPTT with the surrogate derivative of ``surrogate`` in place of the step's derivative.

    On a CUDA tensor (with CuPy) the fused kernels of ``kernels/lif.cu`` run: one thread per
    neuron, a loop over ``T`` in registers, the spikes kept as bits for the backward.  Elsewhere
    the torch reference runs, an unrolled autograd graph.  Both give the same spikes; half
    inputs are integrated in float32 on both paths.

    Parameters
    ----------
    x_seq : torch.Tensor
        Input currents ``[T, ...]`` (float16, float32 or float64), ``T >= 1``.
    tau : float
        Membrane time constant, ``tau >= 1`` (the leak per step is ``1/tau``); ``math.inf``
        with ``decay_input=False`` is the IF neuron.
    v_threshold : float
        Firing threshold.
    v_reset : float or None
        Reset potential (hard reset), or None for the soft reset (subtract the threshold).
    surrogate : {"atan", "sigmoid", "rectangular", "triangle"}
        Surrogate derivative (see :func:`surrogate_grad`).
    alpha : float, optional
        The surrogate's parameter; its default (2, 4, 1, 1) when None.
    detach_reset : bool
        Stop the gradient through the reset's spike.
    decay_input : bool
        Whether the input is divided by ``tau`` too.
    v_init : float or torch.Tensor, optional
        Potential before the first step, a number or a tensor broadcastable to ``x_seq[0]``
        (gradients flow into a tensor).  Default: ``v_reset`` (0 for the soft reset).
    return_membrane : bool
        Also return the membrane trace ``V[t]`` (after the reset), ``[T, ...]``.
    backend : {"auto", "cpu", "cuda"}, optional
        Force the reference (``"cpu"``) or the kernel path (``"cuda"``).

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        Spikes (0/1 in ``x_seq``'s dtype), and the membrane trace when requested.

    Raises
    ------
    ValueError
        ``tau < 1`` (or ``tau = inf`` with ``decay_input``), an unknown surrogate,
        ``v_reset >= v_threshold``, ``x_seq`` without a time axis, empty, or holding NaN or
        Inf (it would fire no spikes silently), or a ``v_init`` that is not finite or does
        not broadcast.  Finiteness is not checked for CUDA tensors: there the check would
        synchronise the device on every call (measured on an H200: 0.69 -> 1.28 ms for
        T = 32, N = 2^20, float32), so there, as in torch itself, NaN input is not detected
        (it gives NaN membrane potentials and no spikes).
    TypeError
        ``x_seq`` not a floating tensor, or a flag that is not a bool.

    Examples
    --------
    >>> lif_multistep(torch.full((4, 1), 1.5), tau=2.0).flatten().tolist()
    [0.0, 1.0, 0.0, 1.0]
    >>> x = torch.full((4, 1), 0.6)
    >>> s, v = lif_multistep(x, v_reset=None, return_membrane=True)
    >>> [round(a, 3) for a in v.flatten().tolist()]
    [0.3, 0.45, 0.525, 0.562]
    """
    check_tensor("x_seq", x_seq, dtypes=_DTYPES, min_ndim=1, nonempty=True)
    if x_seq.device.type != "cuda":  # on CUDA the check would synchronise every call
        check_finite_tensor("x_seq", x_seq.detach())
    p = LIFParams.make(tau, v_threshold, v_reset, surrogate, alpha, detach_reset, decay_input)
    check_flag("return_membrane", return_membrane)
    v0: torch.Tensor | None = None
    v_start = p.v_rest
    if isinstance(v_init, torch.Tensor):
        v0 = check_tensor("v_init", v_init, dtypes=_DTYPES, device=x_seq.device)
        if v0.device.type != "cuda":
            check_finite_tensor("v_init", v0.detach())
        try:
            fits = torch.broadcast_shapes(v0.shape, x_seq.shape[1:]) == x_seq.shape[1:]
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"v_init must broadcast to x_seq[0]'s shape {tuple(x_seq.shape[1:])}, "
                f"got shape {tuple(v0.shape)}"
            )
    elif v_init is not None:
        v_start = check_real("v_init", v_init)
    spikes, trace = _lif_op(x_seq, v0, v_start, p, return_membrane, backend=backend)
    return (spikes, trace) if return_membrane else spikes


class LIFNeuron(nn.Module):
    """Multi-step LIF neurons as a module: ``[T, ...]`` currents in, ``[T, ...]`` spikes out.

    The arguments are those of :func:`lif_multistep`.  Each call starts from ``v_init``
    (stateless across calls: every batch is an independent sequence).  With ``record=True``
    the last call's membrane trace is kept in ``.membrane`` (detached).

    Examples
    --------
    >>> lif = LIFNeuron(tau=2.0, surrogate="triangle")
    >>> lif(torch.full((3, 2), 1.2)).sum(0).tolist()
    [1.0, 1.0]
    """

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: str = "atan",
        alpha: float | None = None,
        detach_reset: bool = False,
        decay_input: bool = True,
        v_init: float | None = None,
        record: bool = False,
    ) -> None:
        super().__init__()
        self.params = LIFParams.make(
            tau, v_threshold, v_reset, surrogate, alpha, detach_reset, decay_input
        )
        self.v_init = None if v_init is None else check_real("v_init", v_init)
        self.record = check_flag("record", record)
        self.membrane: torch.Tensor | None = None

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        p = self.params
        out = lif_multistep(
            x_seq,
            p.tau,
            p.v_threshold,
            p.v_reset,
            p.surrogate,
            p.alpha,
            p.detach_reset,
            p.decay_input,
            self.v_init,
            return_membrane=self.record,
        )
        if isinstance(out, tuple):
            self.membrane = out[1].detach()
            return out[0]
        return out

    def extra_repr(self) -> str:
        p = self.params
        reset = "soft" if p.v_reset is None else f"v_reset={p.v_reset:g}"
        return f"tau={p.tau:g}, v_threshold={p.v_threshold:g}, {reset}, surrogate={p.surrogate}"


class IFNeuron(LIFNeuron):
    """Integrate-and-fire neurons: no leak, :math:`H[t] = V[t-1] + X[t]`.

    The LIF neuron with ``tau = math.inf`` (a leak of exactly 0) and ``decay_input=False``.

    Examples
    --------
    >>> IFNeuron()(torch.full((4, 1), 0.5)).flatten().tolist()
    [0.0, 1.0, 0.0, 1.0]
    """

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: str = "atan",
        alpha: float | None = None,
        detach_reset: bool = False,
        v_init: float | None = None,
        record: bool = False,
    ) -> None:
        super().__init__(
            math.inf, v_threshold, v_reset, surrogate, alpha, detach_reset, False, v_init, record
        )


def _register_cuda() -> None:
    from ._lif_cuda import lif_cuda

    _lif_op.cuda(lif_cuda)


_register_cuda()
