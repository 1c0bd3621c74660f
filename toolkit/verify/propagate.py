"""The bound-propagation engine shared by all methods (one walk over the graph IR).

The engine reads what to do from the method's record (:class:`~toolkit.verify.methods.
BoundMethod`); the methods (for a domain of perturbations delta, see :mod:`.specs`):

* ``"ibp"``: intervals node by node.
* ``"crown"``: every node whose bounds a relaxation needs (inputs of nonlinear ops, the
  output, and the reported nodes when asked) is bounded by a **backward** pass: start from
  :math:`A = \\pm I` (or the margin matrix ``C`` at the output) and back-substitute through
  every op down to the input, then concretise :math:`\\min_\\delta A\\delta` exactly for the
  domain.  Rows of A are processed in chunks (memory: rows x largest node x 8 bytes).
* ``"forward"``: linear lower/upper functions of delta carried forward through every op
  (Shi et al.'s forward process), concretised at every node.
* ``"alpha-crown"``: CROWN, then the slopes of the elementwise planes in the final
  back-substitution are optimised for the output bounds (:mod:`.alpha`).
* ``"baf"`` (backward-forward, Shi et al.): forward linear bounds everywhere; nodes outside
  the attention sub-blocks (and the output) are then tightened by a backward pass that
  stops at the attention outputs (``L*.merge``) and substitutes their forward linear
  bounds there.

Every method intersects with IBP and with known valid ranges (softmax in [0, 1], ...);
NaN bounds (from 0 * inf in hopeless cases) become infinite, so results stay sound.
All arithmetic is float64.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .alpha import optimize_lower
from .graph import Graph, Node
from .methods import METHODS, BoundMethod, MethodName, get_method
from .relaxations import Elementwise, Linear, LinearBounds
from .relaxations._base import safe_mul
from .relaxations.softmax import Shift
from .specs import Domain

__all__ = ["METHODS", "BoundMemoryError", "Propagator", "rows_per_chunk"]

Bounds = tuple[Tensor, Tensor]
F64 = torch.float64
_BYTES = 8
#: live A tensors per backward pass, relative to one A at the largest node it passes
#: (measured: 7 to 9 with tests/verify/_peak.py)
_LIVE = 8


#: backward work (rows x largest node) above which a progress bar is shown (about 10 s)
PROGRESS_WORK = 2 * 10**8


class BoundMemoryError(MemoryError):
    """Raised when a bound computation cannot fit ``memory_limit``; carries ``estimate``."""

    def __init__(self, msg: str, estimate: int) -> None:
        super().__init__(msg)
        self.estimate = estimate


def rows_per_chunk(
    B: int, max_numel: int, memory_limit: int | None, chunk_size: int | None, total_rows: int
) -> int:
    """Rows of A processed at once so that ``_LIVE * B * rows * max_numel * 8 <= limit``."""
    if chunk_size is not None:
        return max(1, min(int(chunk_size), total_rows))
    per_row = _LIVE * B * max_numel * _BYTES
    limit = memory_limit if memory_limit is not None else 512 * 2**20
    return max(1, min(total_rows, limit // max(per_row, 1)))


def _nan_to_inf(l: Tensor, u: Tensor) -> Bounds:
    return (torch.where(torch.isnan(l), -math.inf, l), torch.where(torch.isnan(u), math.inf, u))


def _uncross(l: Tensor, u: Tensor) -> Bounds:
    """Order bounds that rounding left crossed (``l > u`` by a few ulps of large values).

    Two sound bounds of the same value can cross only by rounding; the value then lies
    (up to rounding) between them, so swapping keeps it inside.  Left crossed, the
    relaxation of the next op would see an empty interval and fall back to constant planes,
    losing all dependence on the perturbation.
    """
    crossed = l > u
    if bool(crossed.any()):
        l, u = torch.where(crossed, u, l), torch.where(crossed, l, u)
    return l, u


class Propagator:
    """One bound computation of ``graph`` on ``domain`` with ``method`` (internal: the public
    entry points are in :mod:`toolkit.verify.api`)."""

    def __init__(
        self,
        graph: Graph,
        domain: Domain,
        method: MethodName | BoundMethod,
        report: bool = False,
        memory_limit: int | None = None,
        chunk_size: int | None = None,
        alpha_steps: int = 20,
        alpha_lr: float = 0.25,
    ):
        self.g, self.dom = graph, domain
        self.spec = get_method(method)
        self.method = self.spec.name
        self.alpha_steps, self.alpha_lr = alpha_steps, alpha_lr
        self.nodes = graph.nodes
        self.order = list(self.nodes)
        self.index = {n: i for i, n in enumerate(self.order)}
        self.report = report
        self.memory_limit, self.chunk_size = memory_limit, chunk_size
        self.max_numel = max(math.prod(n.shape) for n in self.nodes.values())
        self.bounds: dict[str, Bounds] = {}
        self.rels: dict[str, Any] = {}
        self.lins: dict[str, LinearBounds] = {}

    # ------------------------------------------------------------------ helpers
    def _resolve(self, name: str) -> str:
        node = self.nodes[name]
        while node.op is not None and node.op.ibp_exact and len(node.inputs) == 1:
            node = self.nodes[node.inputs[0]]
        return node.name

    def need_set(self) -> set[str]:
        need = {self.g.output}
        for node in self.nodes.values():
            if node.op is not None and (node.op.nonlinear or isinstance(node.op, Shift)):
                need.update(node.inputs)
        if self.report:
            need.update(self.g.reported())
        need = {self._resolve(n) for n in need}
        need.discard("input")
        return need

    def _implied(self, node: Node, backed: set[str]) -> bool:
        """True when a backward pass from ``node`` cannot beat its IBP bounds.

        For an elementwise op y = f(x) whose input x (up to exact shifts/reshapes) already has
        backward bounds [L, U] from this run, the backward bound of y_i is the plane
        a x + b minimised over [L, U] (the pass is positively homogeneous in A), which is
        below the exact range of f over the intersected [l, u] ⊆ [L, U] that IBP gives.
        """
        return (
            isinstance(node.op, Elementwise)
            and len(node.inputs) == 1
            and self._resolve(node.inputs[0]) in backed
        )

    def _in_bnds(self, node: Node) -> list[Bounds]:
        return [self.bounds[i] for i in node.inputs]

    def concretize_lin(self, lin: LinearBounds) -> Bounds:
        B = lin.lb.shape[0]
        shape = lin.lb.shape
        lw, uw = lin.lw.reshape(B, -1, self.dom.n), lin.uw.reshape(B, -1, self.dom.n)
        l = lin.lb.reshape(B, -1) + self.dom.concretize_lower(lw)
        u = lin.ub.reshape(B, -1) + self.dom.concretize_upper(uw)
        return l.reshape(shape), u.reshape(shape)

    # ------------------------------------------------------------------ backward
    def backward(
        self,
        start: str,
        A0: Tensor,
        stop_attention: bool,
        bias0: Tensor | None = None,
        rels: dict[str, Any] | None = None,
    ) -> Tensor:
        """Lower bound [B, m] of ``A0 . node(start) + bias0`` for A0 [B, m, *shape].

        ``rels`` overrides the relaxations of some nodes (alpha-CROWN's optimised planes).
        """
        B, m = A0.shape[:2]
        acc = {start: A0}
        bias = A0.new_zeros(B, m) if bias0 is None else bias0
        Wd = A0.new_zeros(B, m, self.dom.n)
        for name in reversed(self.order[: self.index[start] + 1]):
            A = acc.pop(name, None)
            if A is None:
                continue
            node = self.nodes[name]
            if node.op is None:
                bias = bias + (A * self.dom.center[:, None]).flatten(2).sum(-1)
                Wd = Wd + self.dom.gather(A).reshape(B, m, -1)
                continue
            if stop_attention and node.attention:
                lin = self.lins[name]
                Af = A.reshape(B, m, -1)
                Ap, An = Af.clamp(min=0), Af.clamp(max=0)
                N = Af.shape[-1]
                Wd = Wd + Ap @ lin.lw.reshape(B, N, -1) + An @ lin.uw.reshape(B, N, -1)
                bias = bias + (
                    safe_mul(Ap, lin.lb.reshape(B, 1, N)) + safe_mul(An, lin.ub.reshape(B, 1, N))
                ).sum(-1)
                continue
            rel = rels[name] if rels is not None and name in rels else self.rels[name]
            As, b = node.op.backward(A, self._in_bnds(node), rel)
            bias = bias + b
            for i, Ai in zip(node.inputs, As):
                acc[i] = acc[i] + Ai if i in acc else Ai
        return bias + self.dom.concretize_lower(Wd)

    def backward_bounds(self, name: str, stop_attention: bool) -> Bounds:
        """Bounds of every entry of node ``name`` by chunked backward passes from +-I."""
        node = self.nodes[name]
        N = math.prod(node.shape)
        B, dev = self.dom.B, self.dom.device
        rows = rows_per_chunk(B, self.max_numel, self.memory_limit, self.chunk_size, 2 * N)
        out = torch.empty(B, 2 * N, dtype=F64, device=dev)
        op = node.op
        # A0 = +-I met by a weight matrix first: start one node lower with the rows of W^T
        # (the same numbers as I @ W^T, without the dense product with the identity)
        lin_op = op if isinstance(op, Linear) and len(node.inputs) == 1 else None
        for r0 in range(0, 2 * N, rows):
            r1 = min(2 * N, r0 + rows)
            idx = torch.arange(r0, r1, device=dev)
            sign = torch.where(idx < N, 1.0, -1.0).to(F64)
            if lin_op is not None and lin_op.W is not None:
                src = self.nodes[node.inputs[0]]
                Dout = node.shape[-1]
                j = idx % N
                lead, o = j // Dout, j % Dout
                W = lin_op.W
                A = torch.zeros(B, r1 - r0, N // Dout, W.shape[0], dtype=F64, device=dev)
                A[:, torch.arange(r1 - r0, device=dev), lead] = sign[:, None] * W.T[o]
                bias0 = None
                if lin_op.b is not None:
                    b = lin_op.b.expand(node.shape).reshape(-1)[j]
                    bias0 = (sign * b).expand(B, r1 - r0).clone()
                out[:, r0:r1] = self.backward(
                    src.name, A.reshape(B, r1 - r0, *src.shape), stop_attention, bias0
                )
                continue
            A0 = torch.zeros(B, r1 - r0, N, dtype=F64, device=dev)
            A0[:, torch.arange(r1 - r0, device=dev), idx % N] = sign
            out[:, r0:r1] = self.backward(name, A0.reshape(B, r1 - r0, *node.shape), stop_attention)
        l = out[:, :N].reshape(B, *node.shape)
        u = -out[:, N:].reshape(B, *node.shape)
        return l, u

    # ------------------------------------------------------------------ main walk
    def run(self, C: Tensor | None = None) -> tuple[Tensor, Tensor, OrderedDict[str, Bounds]]:
        """Walk the graph. Returns ``(lower, upper, intermediate)``.

        Without ``C`` the bounds are on the output node [B, *out]; with ``C`` [B, r, C_out]
        they are on ``C @ output`` [B, r] (margins), computed inside the linear bounds.
        """
        spec = self.spec
        need = self.need_set() if spec.backward else set()
        uses_lin = spec.forward_linear
        consumers = self.g.consumers()
        refs = {n: len(c) for n, c in consumers.items()}
        keep: set[str] = set()
        backed: set[str] = set()
        if spec.stops_at_attention:  # attention outputs are substituted by backward passes
            keep = {
                n
                for n, nd in self.nodes.items()
                if nd.attention and any(not self.nodes[c].attention for c in consumers[n])
            }
        # long runs (CROWN at T = 256 takes minutes) show a bar; Ctrl-C stops them cleanly:
        # all state lives on this Propagator, which the interrupted caller drops
        work = sum(2 * math.prod(self.nodes[n].shape) for n in need) * self.max_numel
        bar = tqdm(
            total=len(need),
            desc=f"{self.method}: backward passes",
            unit="node",
            disable=work < PROGRESS_WORK,
            leave=False,
        )
        with bar:
            for name, node in self.nodes.items():
                if node.op is None:
                    self.bounds[name] = self.dom.input_bounds()
                    if uses_lin:
                        self.lins[name] = self.dom.input_linear()
                    continue
                bnds = self._in_bnds(node)
                rel = node.op.relax(bnds)
                self.rels[name] = rel
                l, u = node.op.ibp(bnds, rel)
                if uses_lin:
                    lin = node.op.forward_linear([self.lins[i] for i in node.inputs], bnds, rel)
                    self.lins[name] = lin
                    fl, fu = self.concretize_lin(lin)
                    l, u = torch.fmax(l, fl), torch.fmin(u, fu)
                    for i in node.inputs:
                        refs[i] -= 1
                        if refs[i] == 0 and i not in keep and i != self.g.output:
                            self.lins.pop(i, None)
                if (
                    name in need
                    and not (spec.stops_at_attention and node.attention)
                    and not self._implied(node, backed)
                ):
                    cl, cu = self.backward_bounds(name, stop_attention=spec.stops_at_attention)
                    l, u = torch.fmax(l, cl), torch.fmin(u, cu)
                    backed.add(name)
                if name in need:
                    bar.update(1)
                if node.valid_range is not None:
                    lo, hi = node.valid_range
                    l, u = l.clamp(min=lo), u.clamp(max=hi)
                self.bounds[name] = _uncross(*_nan_to_inf(l, u))
        inter: OrderedDict[str, Bounds] = OrderedDict()
        if self.report:
            for n in self.g.reported():
                if self.nodes[n].comparable:
                    inter[n] = self.bounds[n]
        if C is None:
            return (*self.output_bounds(), inter)
        return (*self._spec_bounds(C), inter)

    def output_bounds(self) -> Bounds:
        """Bounds [B, *out] of the output node after :meth:`run`; a method that optimises
        slopes does so for every entry (on the intermediate bounds already computed), the
        others read them."""
        out = self.g.output
        if not self.spec.optimizes_slopes:
            return self.bounds[out]
        n_out = math.prod(self.nodes[out].shape)
        C = torch.eye(n_out, dtype=F64, device=self.dom.device).expand(self.dom.B, -1, -1)
        lo, hi = self._spec_bounds(C)
        shape = (self.dom.B, *self.nodes[out].shape)
        return lo.reshape(shape), hi.reshape(shape)

    def _spec_bounds(self, C: Tensor) -> Bounds:
        out = self.g.output
        spec = self.spec
        Cp, Cn = C.clamp(min=0), C.clamp(max=0)
        l, u = self.bounds[out]  # interval bounds of the spec (used by ibp, intersected else)
        ilo = (Cp @ l[..., None] + Cn @ u[..., None])[..., 0]
        ihi = (Cp @ u[..., None] + Cn @ l[..., None])[..., 0]
        if not spec.backward and not spec.forward_linear:
            lo, hi = ilo, ihi
        elif not spec.backward:
            lin = self.lins[out]
            lw = Cp @ lin.lw + Cn @ lin.uw
            uw = Cp @ lin.uw + Cn @ lin.lw
            lo = (Cp @ lin.lb[..., None] + Cn @ lin.ub[..., None])[..., 0]
            hi = (Cp @ lin.ub[..., None] + Cn @ lin.lb[..., None])[..., 0]
            lo = lo + self.dom.concretize_lower(lw)
            hi = hi + self.dom.concretize_upper(uw)
        else:
            A = torch.cat([C, -C], 1)
            r = self.backward(out, A, stop_attention=spec.stops_at_attention)
            k = C.shape[1]
            lo, hi = r[:, :k], -r[:, k:]
            if spec.optimizes_slopes:
                lo, hi = torch.fmax(lo, ilo), torch.fmin(hi, ihi)
                steps, lr = self.alpha_steps, self.alpha_lr
                lo = optimize_lower(self, out, C, lo, steps=steps, lr=lr)
                hi = -optimize_lower(self, out, -C, -hi, steps=steps, lr=lr)
        return _nan_to_inf(torch.fmax(lo, ilo), torch.fmin(hi, ihi))
