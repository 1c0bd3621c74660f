"""Perturbation specifications on the word embeddings e [B, T, D].

* :class:`LpBall` ``(eps, p, positions)``: for every chosen position ``t`` independently,
  :math:`\\|e'_t - e_t\\|_p \\le \\epsilon` (a product of per-word balls, as in Shi et al.);
  the other positions are fixed.
* :class:`Synonyms` ``(candidates, budget)``: position ``t`` may be swapped for one of its
  candidate embeddings, at most ``budget`` positions at once.  The bound engine relaxes the
  candidates of a position to their **convex hull** (a linear function is minimised over a
  hull at one of its vertices, so concretisation is exact per position; IBP uses the
  bounding box).  If ``budget < #positions`` every subset of ``budget`` positions is bounded
  separately (hull on the subset, others fixed; smaller subsets are contained because the
  hull includes the original word) and the union is bounded by the min/max over subsets.

Internally a spec becomes one or more *domains* with a centre [B, T, D], perturbed
positions [B, S] and a ``concretize_lower(W)`` giving :math:`\\min_\\delta W\\cdot\\delta`.

>>> import torch
>>> spec = LpBall(0.1, p="inf", positions=[0, 2])
>>> d = spec.domains(torch.zeros(1, 4, 3))[0]
>>> d.concretize_lower(torch.ones(1, 1, 2, 3, dtype=torch.float64))
tensor([[-0.6000]], dtype=torch.float64)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

from .._checks import check_int, check_real, check_tensor
from .interface import as_int_tensor
from .relaxations import LinearBounds

if TYPE_CHECKING:
    from .interface import VerifiableModel

__all__ = [
    "Domain",
    "HullDomain",
    "LpBall",
    "LpDomain",
    "PNorm",
    "SampleKind",
    "Spec",
    "Synonyms",
    "normalize_p",
]

#: the norms of :class:`LpBall` (``"inf"`` and ``float("inf")`` are the same)
PNorm = float | int | Literal["inf", "infinity"]
#: where :meth:`LpDomain.sample` draws
SampleKind = Literal["interior", "surface", "vertex"]

F64 = torch.float64


def normalize_p(p: PNorm) -> float:
    """Map p in {1, 2, inf, "inf"} to a float; ``ValueError`` otherwise.

    Examples
    --------
    >>> normalize_p("inf"), normalize_p(2)
    (inf, 2.0)
    """
    if isinstance(p, str) and p.lower() in ("inf", "infinity"):
        return math.inf
    try:  # numbers of any kind; bools and numeric strings are refused
        ok = not isinstance(p, (bool, str)) and float(p) in (1.0, 2.0, math.inf)
    except (TypeError, ValueError):
        ok = False
    if ok:
        return float(p)
    raise ValueError(f"p must be 1, 2, float('inf') or 'inf', got p={p!r}")


def _position_list(positions: object, name: str = "positions") -> list[int]:
    """``positions`` as a non-empty list of ints >= 0 (T is checked later, per input)."""
    if isinstance(positions, (str, bytes, Mapping)) or not isinstance(
        positions, (Sequence, Tensor, range)
    ):
        raise TypeError(
            f"{name} must be a sequence of int, got {positions!r} ({type(positions).__name__})"
        )
    return _check_positions(list(positions), None, name)


def _check_positions(positions: Sequence[Any], T: int | None, name: str = "positions") -> list[int]:
    pos = []
    for t in positions:
        if isinstance(t, Tensor):  # a 0-d integer tensor counts as an int
            check_tensor(name, t, dtypes=(torch.int32, torch.int64), ndim=0)
            t = int(t)
        pos.append(check_int(name, t, 0))
    if not pos:
        raise ValueError(f"{name} must be non-empty, got {positions!r}")
    if len(set(pos)) != len(pos):
        raise ValueError(f"{name} must not repeat a position, got {pos}")
    bad = [] if T is None else [t for t in pos if not 0 <= t < T]
    if bad:
        raise ValueError(f"{name} must lie in [0, {T}) for sequence length T={T}, got {bad}")
    return pos


class Domain:
    """A set of embeddings: centre [B, T, D] (float64) plus perturbations ``delta`` [B, S, D]
    at the positions ``pos`` [B, S] (long).  Subclasses define the set through ``box`` and
    ``concretize_lower``."""

    def __init__(self, center: Tensor, pos: Tensor) -> None:
        self.center = center.to(F64)
        self.device = center.device
        self.pos = pos.long().to(self.device)
        B, T, D = center.shape
        self.B, self.T, self.D, self.S = B, T, D, pos.shape[1]
        self.n = self.S * D

    def gather(self, A: Tensor) -> Tensor:
        """A [B, m, T, D] -> [B, m, S, D] (rows of the perturbed positions)."""
        idx = self.pos[:, None, :, None].expand(A.shape[0], A.shape[1], self.S, A.shape[-1])
        return torch.gather(A, 2, idx)

    def apply(self, delta: Tensor) -> Tensor:
        """Embeddings with ``delta`` [..., B, S, D] added at the perturbed positions."""
        lead = delta.shape[:-3]
        e = self.center.expand(*lead, *self.center.shape).clone()
        idx = self.pos[:, :, None].expand(self.B, self.S, self.D).expand(*lead, -1, -1, -1)
        return e.scatter_add(-2, idx, delta.to(e.dtype))

    def box(self) -> tuple[Tensor, Tensor]:
        """Elementwise bounds ``[B, S, D]`` of the perturbation."""
        raise NotImplementedError

    def concretize_lower(self, W: Tensor) -> Tensor:
        """:math:`\\min_\\delta W\\cdot\\delta` [B, m] for W [B, m, S*D] (or [B, m, S, D])."""
        raise NotImplementedError

    def input_bounds(self) -> tuple[Tensor, Tensor]:
        """Elementwise bounds of the embeddings [B, T, D]."""
        bl, bu = self.box()
        return self.apply(bl), self.apply(bu)

    def input_linear(self) -> LinearBounds:
        """The embeddings as (exact) linear functions of the perturbation."""
        B, T, D, S = self.B, self.T, self.D, self.S
        w = torch.zeros(B, T, D, S, D, dtype=F64, device=self.device)
        eye = torch.eye(D, dtype=F64, device=self.device)
        for s in range(S):
            w[torch.arange(B, device=self.device), self.pos[:, s], :, s, :] = eye
        w = w.reshape(B, T, D, S * D)
        return LinearBounds(w, self.center, w, self.center)

    def concretize_upper(self, W: Tensor) -> Tensor:
        """:math:`\\max_\\delta W\\cdot\\delta` [B, m]."""
        return -self.concretize_lower(-W)


class LpDomain(Domain):
    """Per-position Lp balls of radius ``eps`` [B] around the centre."""

    def __init__(self, center: Tensor, pos: Tensor, eps: Tensor, p: float) -> None:
        super().__init__(center, pos)
        self.eps = eps.to(F64).to(self.device).reshape(-1).expand(self.B)
        self.p = p

    def box(self) -> tuple[Tensor, Tensor]:
        r = self.eps[:, None, None].expand(self.B, self.S, self.D)
        return -r, r

    def concretize_lower(self, W: Tensor) -> Tensor:
        W = W.reshape(*W.shape[:2], self.S, self.D)
        q = {1.0: math.inf, 2.0: 2.0, math.inf: 1.0}[self.p]
        dual = torch.linalg.vector_norm(W, ord=q, dim=-1).sum(-1)
        return -torch.where(dual == 0, torch.zeros_like(dual), dual * self.eps[:, None])

    def project(self, delta: Tensor) -> Tensor:
        """Project ``delta`` [..., B, S, D] onto the balls."""
        eps = self.eps[:, None, None]
        if self.p == math.inf:
            return torch.maximum(torch.minimum(delta, eps), -eps)
        if self.p == 2.0:
            nrm = delta.norm(dim=-1, keepdim=True)
            return delta * torch.clamp(eps / nrm.clamp(min=1e-300), max=1.0)
        # L1: Duchi et al. (2008) sort-based projection
        a = delta.abs()
        srt = a.sort(-1, descending=True).values
        cs = srt.cumsum(-1) - eps
        k = torch.arange(1, self.D + 1, dtype=delta.dtype, device=delta.device)
        rho = ((srt - cs / k) > 0).sum(-1, keepdim=True).clamp(min=1)
        theta = cs.gather(-1, rho - 1) / rho
        out = delta.sign() * (a - theta).clamp(min=0)
        return torch.where(a.sum(-1, keepdim=True) <= eps, delta, out)

    def sample(self, n: int, generator: torch.Generator, kind: SampleKind) -> Tensor:
        """``n`` perturbations [n, B, S, D]: kind in {'interior', 'surface', 'vertex'}.

        Drawn with ``generator`` on its own device, returned on the domain's device.
        """
        eps = self.eps[:, None, None].to(generator.device)
        return self._sample(n, generator, kind, eps).to(self.device)

    def _sample(self, n: int, generator: torch.Generator, kind: str, eps: Tensor) -> Tensor:
        shape = (n, self.B, self.S, self.D)
        rng: dict[str, Any] = dict(generator=generator, device=generator.device)
        f64: dict[str, Any] = dict(rng, dtype=F64)

        def signs(size: tuple[int, ...]) -> Tensor:
            return torch.randint(0, 2, size, **rng).to(F64) * 2 - 1

        if self.p == math.inf:
            if kind == "interior":
                return (2 * torch.rand(shape, **f64) - 1) * eps
            sgn = signs(shape)
            if kind == "vertex":
                return sgn * eps
            u = 2 * torch.rand(shape, **f64) - 1
            face = torch.randint(0, self.D, shape[:-1], **rng)
            u.scatter_(-1, face[..., None], sgn[..., :1])
            return u * eps
        if self.p == 1.0 and kind == "vertex":
            idx = torch.randint(0, self.D, shape[:-1], **rng)
            out = torch.zeros(shape, dtype=F64, device=generator.device)
            out.scatter_(-1, idx[..., None], signs(shape[:-1])[..., None])
            return out * eps
        if self.p == 2.0:
            g = torch.randn(shape, **f64)
            g = g / g.norm(dim=-1, keepdim=True)
            if kind == "interior":
                g = g * torch.rand((*shape[:-1], 1), **f64) ** (1 / self.D)
            return g * eps
        # p = 1: uniform in the ball via D+1 exponentials (surface: D exponentials)
        ex = -torch.log(torch.rand((*shape[:-1], self.D + 1), **f64))
        sgn = signs(shape)
        den = ex.sum(-1, keepdim=True) if kind == "interior" else ex[..., :-1].sum(-1, keepdim=True)
        return sgn * ex[..., :-1] / den * eps


class HullDomain(Domain):
    """Convex hull of candidate offsets ``deltas`` [B, S, K, D] (zero offset included)."""

    def __init__(self, center: Tensor, pos: Tensor, deltas: Tensor) -> None:
        super().__init__(center, pos)
        self.deltas = deltas.to(F64)

    def box(self) -> tuple[Tensor, Tensor]:
        return self.deltas.amin(2), self.deltas.amax(2)

    def concretize_lower(self, W: Tensor) -> Tensor:
        W = W.reshape(*W.shape[:2], self.S, self.D)
        return torch.einsum("bmsd,bskd->bmsk", W, self.deltas).amin(-1).sum(-1)


class LpBall:
    """Per-position Lp balls on the embeddings of ``positions`` (None: all positions).

    Parameters
    ----------
    eps : float or Tensor
        Radius >= 0, or a tensor [B] of per-sentence radii.
    p : 1, 2, float('inf') or "inf"
        The norm.
    positions : sequence of int or None
        Perturbed positions, in [0, T); None perturbs every position.

    Examples
    --------
    >>> LpBall(0.1, p="inf", positions=[0, 2])
    LpBall(eps=0.1, p=inf, positions=[0, 2])
    """

    def __init__(
        self, eps: float | Tensor, p: PNorm = 2, positions: Sequence[int] | None = None
    ) -> None:
        if isinstance(eps, Tensor):
            check_tensor("eps", eps, ndim=(0, 1))
            if eps.is_complex() or not bool(torch.isfinite(eps).all()) or bool((eps < 0).any()):
                raise ValueError(f"eps must be finite and >= 0 (float or 1-d tensor), got {eps}")
        else:
            eps = check_real("eps", eps, 0.0)
        self.eps, self.p = eps, normalize_p(p)
        self.positions = None if positions is None else _position_list(positions)

    def __repr__(self) -> str:
        return f"LpBall(eps={self.eps}, p={self.p}, positions={self.positions})"

    def domains(self, e: Tensor) -> list[LpDomain]:
        """The one domain of this ball around embeddings ``e`` [B, T, D]."""
        B, T, _ = e.shape
        pos = list(range(T)) if self.positions is None else _check_positions(self.positions, T)
        eps = torch.as_tensor(self.eps, dtype=F64).reshape(-1)
        if eps.numel() not in (1, B):
            raise ValueError(f"eps must be a float or have B={B} entries, got {eps.numel()}")
        return [LpDomain(e, torch.tensor(pos, device=e.device).expand(B, -1), eps, self.p)]


class Synonyms:
    """Word substitutions: ``candidates[t]`` are replacement embeddings for position ``t``.

    Parameters
    ----------
    candidates : mapping int -> Tensor
        Position -> tensor [K, D] (shared by the batch) or [B, K, D].
    budget : int
        At most this many positions are swapped at once (>= 1).
    max_subsets : int
        The most position subsets allowed (default 1000).  The bounds are the union over
        all C(S, min(budget, S)) subsets of ``budget`` positions, one bound
        computation each (20 positions with budget 10 would be 184,756 of them); more than
        ``max_subsets`` is a ValueError that gives the count, raised here, before any work.

    Raises
    ------
    ValueError
        When the subsets number more than ``max_subsets``.

    Examples
    --------
    >>> Synonyms({1: torch.zeros(3, 4)}, budget=1)
    Synonyms(positions=[1], budget=1)
    """

    def __init__(
        self, candidates: Mapping[int, Tensor], budget: int = 1, *, max_subsets: int = 1000
    ) -> None:
        if not isinstance(candidates, Mapping) or not candidates:
            raise TypeError(
                "candidates must be a non-empty mapping position -> tensor [K, D] "
                f"or [B, K, D], got {type(candidates).__name__}"
            )
        for t, c in candidates.items():
            check_tensor(f"candidates[{t}]", c, ndim=(2, 3))
            if c.shape[-2] < 1:
                raise ValueError(
                    f"candidates[{t}] must be a tensor [K, D] or [B, K, D] with "
                    f"K >= 1, got {tuple(c.shape)}"
                )
        self.budget = check_int("budget", budget)
        self.max_subsets = check_int("max_subsets", max_subsets)
        self.candidates = dict(candidates)
        self.positions = list(self.candidates)
        S = len(self.positions)
        n = math.comb(S, min(self.budget, S))
        if n > self.max_subsets:
            raise ValueError(
                f"budget={self.budget} over {S} positions gives {n} position subsets (one "
                f"bound computation each), more than max_subsets={self.max_subsets}; lower "
                "budget, use fewer positions, or raise max_subsets"
            )

    def __repr__(self) -> str:
        return f"Synonyms(positions={self.positions}, budget={self.budget})"

    @classmethod
    def nearest(
        cls,
        model: VerifiableModel,
        token_ids: Tensor | Sequence[int],
        positions: Sequence[int],
        k: int = 5,
        budget: int = 1,
        exclude: Sequence[int] = (),
        max_subsets: int = 1000,
    ) -> Synonyms:
        """Candidates = the ``k`` nearest rows (L2) of ``model``'s embedding table.

        Parameters
        ----------
        model : VerifiableModel
            Its ``embedding`` table gives the candidates.
        token_ids : Tensor
            [T] or [B, T].
        positions : sequence of int
            Positions that get candidates.
        k : int
            Candidates per position; the word itself and ids in ``exclude`` are skipped.
        budget, max_subsets : int
            As for :class:`Synonyms`.

        Examples
        --------
        >>> from toolkit.verify import TransformerClassifier
        >>> m = TransformerClassifier(20, dim=8, heads=2)
        >>> Synonyms.nearest(m, torch.tensor([1, 2, 3]), [1], k=4).candidates[1].shape
        torch.Size([1, 4, 8])
        """
        ids = as_int_tensor("token_ids", token_ids)
        ids = ids[None] if ids.dim() == 1 else ids
        if ids.dim() != 2:
            raise ValueError(f"token_ids must have shape [T] or [B, T], got {tuple(ids.shape)}")
        table = model.embedding.weight.detach()
        check_int("k", k, 1, table.shape[0] - 1 - len(exclude))
        pos = _check_positions(_position_list(positions), ids.shape[1])
        out = {}
        for t in pos:
            d = torch.cdist(table[ids[:, t]], table)  # [B, V]
            d[torch.arange(ids.shape[0]), ids[:, t]] = math.inf
            if len(exclude):
                d[:, list(exclude)] = math.inf
            out[t] = table[d.topk(k, largest=False).indices]  # [B, k, D]
        return cls(out, budget, max_subsets=max_subsets)

    def domains(self, e: Tensor) -> list[HullDomain]:
        """One hull domain per subset of ``budget`` positions, around ``e`` [B, T, D]."""
        B, T, D = e.shape
        pos = _check_positions(self.positions, T, "candidate positions")
        cands = []
        for t in pos:
            c = self.candidates[t].to(device=e.device, dtype=F64)
            c = c.expand(B, -1, -1) if c.dim() == 2 else c
            if c.shape[0] != B or c.shape[-1] != D:
                raise ValueError(
                    f"candidates[{t}] must have shape [K, {D}] or [{B}, K, {D}], "
                    f"got {tuple(self.candidates[t].shape)}"
                )
            cands.append(c - e[:, t, None, :].to(F64))
        K = max(c.shape[1] for c in cands)
        zero = torch.zeros(B, 1, D, dtype=F64, device=e.device)
        # pad by repeating the zero offset (the original word): the hull is unchanged
        cands = [torch.cat([zero, c] + [zero] * (K - c.shape[1]), 1) for c in cands]
        deltas = torch.stack(cands, 1)  # [B, S, K+1, D]
        S = len(pos)
        r = min(self.budget, S)
        out = []
        for sub in itertools.combinations(range(S), r):
            idx = torch.tensor(pos, device=e.device)[list(sub)]
            out.append(HullDomain(e, idx.expand(B, -1), deltas[:, list(sub)]))
        return out


#: a perturbation specification the public API takes
Spec = LpBall | Synonyms
