"""Empirical soundness check of bounds: sampling + PGD attacks must never escape them.

For an :class:`~toolkit.verify.specs.LpBall` the checker evaluates the model (a float64
copy) on

* uniform samples inside each per-position ball, on its surface and at vertices
  (random corners for p = inf, signed unit vectors for p = 1, the sphere for p = 2);
* projected gradient ascent/descent on every logit (or margin) separately, starting from
  random points, with the steepest-ascent step of the norm (sign for inf, normalised
  gradient for 2, the largest coordinate for 1) and projection onto the balls
  (Duchi et al.'s sort-based projection for p = 1); every iterate is checked.

For :class:`~toolkit.verify.specs.Synonyms` the set is discrete: all swap combinations
within the budget are enumerated when there are at most ``samples`` of them, otherwise
``samples`` random ones are drawn.  A value below ``lower - tol`` or above ``upper + tol``
(``tol = atol + rtol |value|``) is a violation.

>>> import torch
>>> from toolkit.verify import TransformerClassifier, LpBall, bounds
>>> m = TransformerClassifier(30, dim=8, heads=2, ffn_dim=16)
>>> e = m.embed(torch.tensor([[1, 2, 3, 4]]))
>>> spec = LpBall(0.05, p="inf", positions=[0, 2])
>>> lo, hi = bounds(m, e, spec, method="crown")
>>> check_soundness(m, e, spec, lo, hi, samples=64, pgd_steps=5, seed=0).ok
True
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_int, check_positive, check_tensor, make_generator
from .api import Label, _labels, _prep_e, margin_matrix
from .interface import VerifiableModel, check_model
from .specs import HullDomain, LpBall, LpDomain, Spec, Synonyms

__all__ = ["SoundnessResult", "check_soundness"]

F64 = torch.float64


@dataclass
class SoundnessResult:
    """Outcome of :func:`check_soundness`.

    ``violations``: list of dicts (batch, index, side, value, bound, excess);
    ``max_excess``: largest value - upper or lower - value seen (<= 0 when sound);
    ``observed_min/max``: extreme values found [B, C] (an inner estimate of the true range);
    ``n_points``: number of model evaluations;
    ``problems``: reasons the bounds fail without any point escaping them (NaN or infinite
    bounds, a NaN model output).
    """

    violations: list[dict[str, Any]] = field(default_factory=list)
    max_excess: float = -math.inf
    observed_min: Tensor | None = None
    observed_max: Tensor | None = None
    n_points: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the bounds are finite and no point escaped them."""
        return not self.violations and not self.problems

    def __repr__(self) -> str:
        extra = f", problems={self.problems}" if self.problems else ""
        return (
            f"SoundnessResult(ok={self.ok}, violations={len(self.violations)}, "
            f"max_excess={self.max_excess:.3g}, n_points={self.n_points}{extra})"
        )


class _Tracker:
    def __init__(
        self, lower: Tensor, upper: Tensor, atol: float, rtol: float, C: Tensor | None
    ) -> None:
        self.lower, self.upper, self.atol, self.rtol, self.C = lower, upper, atol, rtol, C
        self.mn = torch.full_like(lower, math.inf)
        self.mx = torch.full_like(upper, -math.inf)
        self.n = 0

    def values(self, model: nn.Module, e: Tensor) -> Tensor:
        z = model(e)
        if self.C is not None:  # rows of e are (sample, batch) flattened
            z = z.reshape(-1, *self.lower.shape)
            z = (self.C @ z[..., None])[..., 0].reshape(-1, self.lower.shape[1])
        return z

    def add(self, z: Tensor) -> None:  # z [N, B, C]
        z = z.detach().reshape(-1, *self.lower.shape)
        self.n += z.shape[0]
        self.mn = torch.minimum(self.mn, z.amin(0))
        self.mx = torch.maximum(self.mx, z.amax(0))

    def result(self) -> SoundnessResult:
        res = SoundnessResult(observed_min=self.mn, observed_max=self.mx, n_points=self.n)
        for name, bnd in (("lower", self.lower), ("upper", self.upper)):
            n_bad = int((~torch.isfinite(bnd)).sum())
            if n_bad:
                res.problems.append(
                    f"{name} has {n_bad} NaN or infinite entries of {bnd.numel()} "
                    "(a bound that is not a finite number certifies nothing)"
                )
        if bool(torch.isnan(self.mn).any() | torch.isnan(self.mx).any()):
            res.problems.append("the model gave NaN values inside the perturbation set")
        for side, val, bnd, exc in (
            ("lower", self.mn, self.lower, self.lower - self.mn),
            ("upper", self.mx, self.upper, self.mx - self.upper),
        ):
            finite = exc[torch.isfinite(exc)]
            if finite.numel():
                res.max_excess = max(res.max_excess, float(finite.max()))
            bad = exc > self.atol + self.rtol * val.abs()
            for b, j in bad.nonzero().tolist():
                res.violations.append(
                    dict(
                        batch=b,
                        index=j,
                        side=side,
                        value=float(val[b, j]),
                        bound=float(bnd[b, j]),
                        excess=float(exc[b, j]),
                    )
                )
        return res


def _pgd(
    model: nn.Module,
    dom: LpDomain,
    tr: _Tracker,
    steps: int,
    restarts: int,
    gen: torch.Generator,
) -> None:
    B, _S, D = dom.B, dom.S, dom.D
    K = tr.lower.shape[1]
    eps = dom.eps[:, None, None]
    for j, sign in itertools.product(range(K), (1.0, -1.0)):
        delta = dom.sample(restarts, gen, "interior").requires_grad_(True)
        alpha = 2.5 * eps / max(steps, 1)
        for _ in range(steps + 1):
            z = tr.values(model, dom.apply(delta).reshape(-1, dom.T, D)).reshape(restarts, B, K)
            tr.add(z)
            if _ == steps:
                break
            (g,) = torch.autograd.grad((sign * z[..., j]).sum(), delta)
            with torch.no_grad():
                if dom.p == math.inf:
                    step = g.sign()
                elif dom.p == 2.0:
                    step = g / g.norm(dim=-1, keepdim=True).clamp(min=1e-300)
                else:
                    idx = g.abs().argmax(-1, keepdim=True)
                    step = torch.zeros_like(g).scatter_(-1, idx, g.gather(-1, idx).sign())
                delta = dom.project(delta + alpha * step).requires_grad_(True)


def check_soundness(
    model: VerifiableModel,
    e: Tensor,
    spec: Spec,
    lower: Tensor,
    upper: Tensor,
    samples: int = 256,
    pgd_steps: int = 20,
    seed: int | None = None,
    *,
    generator: torch.Generator | None = None,
    margins_for: Label | None = None,
    pgd_restarts: int = 4,
    atol: float = 1e-6,
    rtol: float = 1e-6,
    device: str | torch.device | None = None,
) -> SoundnessResult:
    """Search for points of ``spec`` whose logits (or margins) escape ``[lower, upper]``.

    Parameters
    ----------
    model, e, spec :
        As for :func:`toolkit.verify.bounds` (e [B, T, D] or [T, D]).
    lower, upper : Tensor
        [B, C] (or [C]) bounds to check.
    samples : int
        Random points per kind (interior, surface, vertex); for Synonyms the number of swap
        combinations (all of them if fewer).
    pgd_steps, pgd_restarts : int
        PGD on each logit, both directions (LpBall only).
    seed : int, optional
        Seeds a fresh CPU ``torch.Generator`` (default 0 when no ``generator`` is given).
    generator : torch.Generator, optional
        A CPU generator to draw from instead (not together with ``seed``).
    margins_for : int or sequence of int or Tensor, optional
        Label(s); check margin bounds :math:`z_y - z_j` instead of logits.
    atol, rtol : float
        A value counts as a violation when it escapes by more than ``atol + rtol |value|``.

    device : str or torch.device, optional
        Where to evaluate the model; as for :func:`toolkit.verify.bounds`.

    Returns
    -------
    SoundnessResult
        ``ok`` is False when a point escaped, and also when ``lower`` or ``upper`` holds a
        NaN or an infinity (``problems`` says why): non-finite bounds never pass.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, naming it: ``samples`` and ``pgd_restarts`` must be ints
        >= 1, ``pgd_steps`` an int >= 0, ``atol`` and ``rtol`` finite and >= 0, ``lower``
        and ``upper`` real tensors of shape [B, C]; both ``seed`` and ``generator`` given.
    """
    check_model(model)
    if not isinstance(spec, (LpBall, Synonyms)):
        raise TypeError(f"spec must be an LpBall or Synonyms, got {type(spec).__name__}")
    gen = make_generator(seed, generator, default_seed=0, cpu=True)
    samples = check_int("samples", samples, 1)
    pgd_steps = check_int("pgd_steps", pgd_steps, 0)
    pgd_restarts = check_int("pgd_restarts", pgd_restarts, 1)
    atol = check_positive("atol", atol, allow_zero=True)
    rtol = check_positive("rtol", rtol, allow_zero=True)
    for name, bnd in (("lower", lower), ("upper", upper)):
        check_tensor(name, bnd)
        if not bnd.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {bnd.dtype}")
    e, _squeeze = _prep_e(model, e, device)
    m64 = copy.deepcopy(model).to(device=e.device, dtype=F64).eval()
    B, T, D = e.shape
    if lower.numel() != B * model.num_classes or upper.numel() != B * model.num_classes:
        raise ValueError(
            f"lower/upper must have shape [B, {model.num_classes}] with B={B}, got "
            f"{tuple(lower.shape)} and {tuple(upper.shape)}"
        )
    lower = lower.detach().to(dtype=F64, device=e.device).reshape(B, -1)
    upper = upper.detach().to(dtype=F64, device=e.device).reshape(B, -1)
    if lower.shape[1] != model.num_classes or upper.shape != lower.shape:
        raise ValueError(
            f"lower/upper must have shape [B, {model.num_classes}] with B={B}, got "
            f"{tuple(lower.shape)} and {tuple(upper.shape)}"
        )
    C = None
    if margins_for is not None:
        y = _labels(margins_for, B, model.num_classes, "margins_for")
        C = margin_matrix(y, B, model.num_classes, e.device)
    tr = _Tracker(lower, upper, atol, rtol, C)
    doms = spec.domains(e)
    with torch.no_grad():
        tr.add(tr.values(m64, e)[None])
    if isinstance(spec, LpBall):
        dom = doms[0]
        assert isinstance(dom, LpDomain)
        chunk = max(1, 4096 // max(B, 1))
        with torch.no_grad():
            for kind in ("interior", "surface", "vertex"):
                for s0 in range(0, samples, chunk):
                    n = min(chunk, samples - s0)
                    x = dom.apply(dom.sample(n, gen, kind)).reshape(-1, T, D)
                    tr.add(tr.values(m64, x))
        if pgd_steps > 0 and float(dom.eps.max()) > 0:
            _pgd(m64, dom, tr, pgd_steps, pgd_restarts, gen)
    else:
        hulls = [d for d in doms if isinstance(d, HullDomain)]
        _synonym_points(m64, e, hulls, samples, tr, gen)
    return tr.result()


def _synonym_points(
    model: nn.Module,
    e: Tensor,
    doms: Sequence[HullDomain],
    samples: int,
    tr: _Tracker,
    gen: torch.Generator,
) -> None:
    """Evaluate discrete swap combinations (each domain = one subset of positions)."""
    dom0 = doms[0]
    _B, T, D = e.shape
    K = dom0.deltas.shape[2]
    S = dom0.S
    total = len(doms) * K**S
    with torch.no_grad():
        combos: list[tuple[HullDomain, tuple[int, ...]]]
        if total <= samples:
            combos = [(d, c) for d in doms for c in itertools.product(range(K), repeat=S)]
        else:
            combos = []
            for _ in range(samples):
                d = doms[int(torch.randint(len(doms), (1,), generator=gen))]
                combos.append((d, tuple(torch.randint(K, (S,), generator=gen).tolist())))
        for i in range(0, len(combos), 256):
            xs = []
            for d, c in combos[i : i + 256]:
                delta = d.deltas[:, torch.arange(S), torch.tensor(c, device=e.device)]
                xs.append(d.apply(delta))
            tr.add(tr.values(model, torch.stack(xs).reshape(-1, T, D)))
