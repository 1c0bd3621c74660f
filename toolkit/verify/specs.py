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

import torch
from torch import Tensor

from .relaxations import LinearBounds

__all__ = ["HullDomain", "LpBall", "LpDomain", "Synonyms", "normalize_p"]

F64 = torch.float64


def normalize_p(p) -> float:
    """Map p in {1, 2, inf, "inf"} to a float; ``ValueError`` otherwise."""
    if isinstance(p, str) and p.lower() in ("inf", "infinity"):
        return math.inf
    if not isinstance(p, bool) and isinstance(p, (int, float)) and float(p) in (1.0, 2.0, math.inf):
        return float(p)
    raise ValueError(f"p must be 1, 2, float('inf') or 'inf', got {p!r}")


def _check_positions(positions, T: int, name: str = "positions") -> list[int]:
    pos = list(positions)
    for t in pos:
        if isinstance(t, bool) or (
            not isinstance(t, (int,))
            and not (isinstance(t, Tensor) and t.dim() == 0 and not t.is_floating_point())
        ):
            raise TypeError(f"{name} must contain ints, got {t!r}")
    pos = [int(t) for t in pos]
    if not pos:
        raise ValueError(f"{name} must be non-empty, got {positions!r}")
    if len(set(pos)) != len(pos):
        raise ValueError(f"{name} must not repeat a position, got {pos}")
    bad = [t for t in pos if not 0 <= t < T]
    if bad:
        raise ValueError(f"{name} must lie in [0, {T}) for sequence length T={T}, got {bad}")
    return pos


class _Domain:
    """centre [B, T, D] (float64) and perturbed positions ``pos`` [B, S] (long)."""

    def __init__(self, center: Tensor, pos: Tensor):
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

    def input_bounds(self):
        bl, bu = self.box()
        return self.apply(bl), self.apply(bu)

    def input_linear(self) -> LinearBounds:
        B, T, D, S = self.B, self.T, self.D, self.S
        w = torch.zeros(B, T, D, S, D, dtype=F64, device=self.device)
        eye = torch.eye(D, dtype=F64, device=self.device)
        for s in range(S):
            w[torch.arange(B, device=self.device), self.pos[:, s], :, s, :] = eye
        w = w.reshape(B, T, D, S * D)
        return LinearBounds(w, self.center, w, self.center)

    def concretize_upper(self, W: Tensor) -> Tensor:
        return -self.concretize_lower(-W)


class LpDomain(_Domain):
    """Per-position Lp balls of radius ``eps`` [B] around the centre."""

    def __init__(self, center, pos, eps: Tensor, p: float):
        super().__init__(center, pos)
        self.eps = eps.to(F64).to(self.device).reshape(-1).expand(self.B)
        self.p = p

    def box(self):
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

    def sample(self, n: int, generator: torch.Generator, kind: str) -> Tensor:
        """``n`` perturbations [n, B, S, D]: kind in {'interior', 'surface', 'vertex'}.

        Drawn with ``generator`` on its own device, returned on the domain's device.
        """
        eps = self.eps[:, None, None].to(generator.device)
        return self._sample(n, generator, kind, eps).to(self.device)

    def _sample(self, n, generator, kind, eps):
        shape = (n, self.B, self.S, self.D)
        rng = dict(generator=generator, device=generator.device)
        f64 = dict(rng, dtype=F64)

        def signs(size):
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


class HullDomain(_Domain):
    """Convex hull of candidate offsets ``deltas`` [B, S, K, D] (zero offset included)."""

    def __init__(self, center, pos, deltas: Tensor):
        super().__init__(center, pos)
        self.deltas = deltas.to(F64)

    def box(self):
        return self.deltas.amin(2), self.deltas.amax(2)

    def concretize_lower(self, W: Tensor) -> Tensor:
        W = W.reshape(*W.shape[:2], self.S, self.D)
        return torch.einsum("bmsd,bskd->bmsk", W, self.deltas).amin(-1).sum(-1)


class LpBall:
    """Per-position Lp balls on the embeddings of ``positions`` (None: all positions).

    Parameters
    ----------
    eps : float >= 0 (or a tensor [B] of per-sentence radii)
    p : 1, 2, float('inf') or "inf"
    positions : sequence of ints in [0, T)
    """

    def __init__(self, eps, p=2, positions: Sequence[int] | None = None):
        if isinstance(eps, Tensor):
            if (
                eps.is_complex()
                or eps.dim() > 1
                or not bool(torch.isfinite(eps).all())
                or bool((eps < 0).any())
            ):
                raise ValueError(f"eps must be finite and >= 0 (float or 1-d tensor), got {eps}")
        else:
            if isinstance(eps, bool) or not isinstance(eps, (int, float)):
                raise TypeError(f"eps must be a float, got {eps!r}")
            if not math.isfinite(eps) or eps < 0:
                raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
        self.eps, self.p = eps, normalize_p(p)
        self.positions = None if positions is None else list(positions)

    def __repr__(self):
        return f"LpBall(eps={self.eps}, p={self.p}, positions={self.positions})"

    def domains(self, e: Tensor) -> list[LpDomain]:
        B, T, _ = e.shape
        pos = list(range(T)) if self.positions is None else _check_positions(self.positions, T)
        eps = torch.as_tensor(self.eps, dtype=F64).reshape(-1)
        if eps.numel() not in (1, B):
            raise ValueError(f"eps must be a float or have B={B} entries, got {eps.numel()}")
        return [LpDomain(e, torch.tensor(pos, device=e.device).expand(B, -1), eps, self.p)]


class Synonyms:
    """Word substitutions: ``candidates[t]`` are replacement embeddings for position ``t``.

    ``candidates``: mapping position -> tensor [K, D] (shared by the batch) or [B, K, D];
    ``budget``: at most this many positions are swapped (int >= 1).
    """

    def __init__(self, candidates: Mapping[int, Tensor], budget: int = 1):
        if not isinstance(candidates, Mapping) or not candidates:
            raise TypeError(
                "candidates must be a non-empty mapping position -> tensor [K, D] "
                f"or [B, K, D], got {type(candidates).__name__}"
            )
        for t, c in candidates.items():
            if not isinstance(c, Tensor) or c.dim() not in (2, 3) or c.shape[-2] < 1:
                raise ValueError(
                    f"candidates[{t}] must be a tensor [K, D] or [B, K, D] with "
                    f"K >= 1, got {getattr(c, 'shape', c)!r}"
                )
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget must be an int >= 1, got {budget!r}")
        self.candidates = dict(candidates)
        self.budget = budget
        self.positions = list(self.candidates)

    def __repr__(self):
        return f"Synonyms(positions={self.positions}, budget={self.budget})"

    @classmethod
    def nearest(
        cls, model, token_ids, positions, k: int = 5, budget: int = 1, exclude: Sequence[int] = ()
    ) -> Synonyms:
        """Candidates = the ``k`` nearest rows (L2) of ``model``'s embedding table.

        ``token_ids`` [T] or [B, T]; the word itself and ids in ``exclude`` are skipped.
        """
        ids = torch.as_tensor(token_ids)
        ids = ids[None] if ids.dim() == 1 else ids
        if ids.dim() != 2:
            raise ValueError(f"token_ids must have shape [T] or [B, T], got {tuple(ids.shape)}")
        table = model.embedding.weight.detach()
        kmax = table.shape[0] - len(exclude)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < kmax:
            raise ValueError(f"k must be an int in [1, vocab_size - 1 - len(exclude)), got {k!r}")
        pos = _check_positions(positions, ids.shape[1])
        out = {}
        for t in pos:
            d = torch.cdist(table[ids[:, t]], table)  # [B, V]
            d[torch.arange(ids.shape[0]), ids[:, t]] = math.inf
            if len(exclude):
                d[:, list(exclude)] = math.inf
            out[t] = table[d.topk(k, largest=False).indices]  # [B, k, D]
        return cls(out, budget)

    def domains(self, e: Tensor) -> list[HullDomain]:
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
