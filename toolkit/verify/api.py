"""Public entry points: :func:`bounds`, :func:`margin_bounds`, :func:`bound_profile`,
:func:`graph_bounds`, :func:`certified_radius`, :func:`estimate_memory`.

Example
-------
>>> import torch
>>> from toolkit.verify import TransformerClassifier, LpBall, bounds
>>> m = TransformerClassifier(30, dim=8, heads=2, ffn_dim=16)
>>> e = m.embed(torch.tensor([[1, 2, 3, 4]]))
>>> lo, hi = bounds(m, e, LpBall(0.01, p=2, positions=[1]), method="crown")
>>> bool((lo <= m(e).double() + 1e-6).all() and (m(e).double() <= hi + 1e-6).all())
True
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._backend import active_backend, resolve_device
from .._checks import check_finite_tensor, check_int, check_positive, check_real, check_tensor
from .graph import Graph, build_graph
from .interface import VerifiableModel, as_int_tensor, check_length, check_model
from .methods import BoundMethod, MethodName, get_method
from .propagate import _LIVE, BoundMemoryError, Propagator, rows_per_chunk
from .relaxations import Linear
from .specs import Domain, LpBall, LpDomain, PNorm, Spec, Synonyms, normalize_p

__all__ = [
    "BoundMemoryError",
    "BoundProfile",
    "bound_profile",
    "bounds",
    "certified_radius",
    "estimate_memory",
    "graph_bounds",
    "margin_bounds",
    "margin_matrix",
]

F64 = torch.float64
Bounds = tuple[Tensor, Tensor]
Intermediate = OrderedDict[str, Bounds]
#: a label: an int, or one int per sentence
Label = int | Sequence[int] | Tensor


def _check_options(
    alpha_steps: object = 0,
    alpha_lr: object = 1.0,
    memory_limit: object = None,
    chunk_size: object = None,
    device: object = None,
) -> None:
    check_int("alpha_steps", alpha_steps, 0)
    check_positive("alpha_lr", alpha_lr)
    if memory_limit is not None:
        check_int("memory_limit", memory_limit)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)
    if device is not None:
        resolve_device(device, "device")


def compute_device(device: object, e: Tensor) -> torch.device:
    """Where a bound computation runs: ``device`` if given (:func:`toolkit._backend.
    resolve_device`), else ``TOOLKIT_DEVICE`` / :func:`toolkit.use_backend` when set to
    ``"cpu"`` or ``"cuda"``, else (``"auto"``) the device of the embeddings ``e``.

    An invalid ``TOOLKIT_DEVICE``, or CUDA asked for where torch sees no GPU, is a
    ValueError naming the argument (or the variable).
    """
    if device is None and active_backend() == "auto":
        return e.device
    return resolve_device(device, "device")


def _prep_e(model: VerifiableModel, e: object, device: object = None) -> tuple[Tensor, bool]:
    """``e`` as float64 [B, T, D] on the computation device (:func:`compute_device`) and
    whether it was a single sentence [T, D]; NaN or infinite entries are a ValueError."""
    squeeze = isinstance(e, Tensor) and e.dim() == 2
    if squeeze:
        assert isinstance(e, Tensor)
        e = e[None]
    model.check_embeddings(e)
    assert isinstance(e, Tensor)
    if e.shape[0] < 1:
        raise ValueError(f"e must hold at least one sentence, got shape {tuple(e.shape)}")
    check_finite_tensor("e", e)
    return e.detach().to(device=compute_device(device, e), dtype=F64), squeeze


def _labels(label: Label, B: int, C: int, name: str = "label") -> Tensor:
    y = as_int_tensor(name, label).reshape(-1).long()
    if y.numel() == 1:
        y = y.expand(B)
    if y.numel() != B:
        raise ValueError(f"{name} must be an int or have B={B} entries, got {y.numel()}")
    if bool(((y < 0) | (y >= C)).any()):
        raise ValueError(f"{name} must lie in [0, {C}), got {y.tolist()}")
    return y


def margin_matrix(label: Label, B: int, C: int, device: torch.device | str | None = None) -> Tensor:
    """Spec matrix [B, C, C] whose row j is :math:`e_y - e_j` (row y is zero).

    Parameters
    ----------
    label : int or sequence of int or Tensor
        The class ``y`` of every sentence (one int for all, or ``B`` of them).
    B, C : int
        Batch size and number of classes.
    device : torch.device or str or None
        Where the matrix lives.

    Examples
    --------
    >>> (margin_matrix(1, 1, 3)[0] + 0.0).tolist()
    [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, -1.0]]
    """
    check_int("B", B)
    check_int("C", C, 2)
    y = _labels(label, B, C).to(device)
    M = -torch.eye(C, dtype=F64, device=device).expand(B, C, C).clone()
    M[torch.arange(B, device=device), :, y] += 1.0
    return M


def _check_spec(spec: object) -> Spec:
    if not isinstance(spec, (LpBall, Synonyms)):
        raise TypeError(f"spec must be an LpBall or Synonyms, got {type(spec).__name__}")
    return spec


def _domains(spec: object, e: Tensor) -> Sequence[Domain]:
    if isinstance(spec, (LpBall, Synonyms)):
        return spec.domains(e)
    if isinstance(spec, Domain):
        return [spec]
    raise TypeError(f"spec must be an LpBall or Synonyms, got {type(spec).__name__}")


def _union(a: Bounds | None, b: Bounds) -> Bounds:
    """The smallest interval holding both (budget subsets of Synonyms are bounded apart)."""
    return b if a is None else (torch.minimum(a[0], b[0]), torch.maximum(a[1], b[1]))


def _propagate(
    graph: Graph,
    e: Tensor,
    spec: Spec | Domain,
    method: BoundMethod,
    C: Tensor | None,
    *,
    logits: bool,
    report: bool,
    memory_limit: int | None,
    chunk_size: int | None,
    alpha_steps: int,
    alpha_lr: float,
) -> tuple[Bounds | None, Bounds | None, Intermediate]:
    """``(output bounds, bounds on C @ output, intermediate)`` of one propagation per domain
    of ``spec`` (united); the output bounds are computed with ``C`` only when ``logits``.

    A method that optimises slopes runs one sentence at a time: an optimiser turns
    last-bit differences of batched arithmetic into visibly different bounds, and a
    sentence's certificate must not depend on which sentences share its batch.
    """
    if (
        method.optimizes_slopes
        and alpha_steps > 0
        and e.shape[0] > 1
        and isinstance(spec, (LpBall, Synonyms))
    ):
        parts = [
            _propagate(
                graph,
                e[b : b + 1],
                _one_sentence(spec, b),
                method,
                None if C is None else C[b : b + 1],
                logits=logits,
                report=report,
                memory_limit=memory_limit,
                chunk_size=chunk_size,
                alpha_steps=alpha_steps,
                alpha_lr=alpha_lr,
            )
            for b in range(e.shape[0])
        ]
        return (
            _concat([part[0] for part in parts]),
            _concat([part[1] for part in parts]),
            OrderedDict((k, _cat_bounds([part[2][k] for part in parts])) for k in parts[0][2]),
        )
    out: Bounds | None = None
    spec_out: Bounds | None = None
    inter: Intermediate = OrderedDict()
    for dom in _domains(spec, e):
        prop = Propagator(
            graph,
            dom,
            method,
            report=report,
            memory_limit=memory_limit,
            chunk_size=chunk_size,
            alpha_steps=alpha_steps,
            alpha_lr=alpha_lr,
        )
        lo, hi, it = prop.run(C)
        if C is None:
            out = _union(out, (lo, hi))
        else:
            spec_out = _union(spec_out, (lo, hi))
            if logits:  # the same propagation's intermediate bounds, no second walk
                out = _union(out, prop.output_bounds())
        for k, b in it.items():
            inter[k] = _union(inter.get(k), b)
    return out, spec_out, inter


def _one_sentence(spec: Spec, b: int) -> Spec:
    """``spec`` for sentence ``b`` alone (per-sentence synonym candidates are sliced)."""
    if isinstance(spec, Synonyms):
        cands = {t: c[b : b + 1] if c.dim() == 3 else c for t, c in spec.candidates.items()}
        return Synonyms(cands, spec.budget, max_subsets=spec.max_subsets)
    return spec


def _cat_bounds(parts: Sequence[Bounds]) -> Bounds:
    return torch.cat([lo for lo, _ in parts]), torch.cat([hi for _, hi in parts])


def _concat(parts: Sequence[Bounds | None]) -> Bounds | None:
    present = [b for b in parts if b is not None]
    return _cat_bounds(present) if len(present) == len(parts) else None


def _zero_label_column(b: Bounds, y: Tensor) -> Bounds:
    rows = torch.arange(y.numel(), device=y.device)
    b[0][rows, y] = 0.0
    b[1][rows, y] = 0.0
    return b


#: the share of the device's free memory that a bound computation may use by default
MEMORY_FRACTION = 0.5


def default_memory_limit(device: torch.device | str = "cpu") -> int:
    """Bytes a bound computation on ``device`` may use when no ``memory_limit`` is given:
    :data:`MEMORY_FRACTION` (one half) of the free memory.

    On CUDA the free memory is ``torch.cuda.mem_get_info``; on the CPU ``MemAvailable`` of
    ``/proc/meminfo`` (else ``psutil.virtual_memory().available``, else 4 GiB assumed).

    Examples
    --------
    >>> default_memory_limit("cpu") > 0
    True
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        free = int(torch.cuda.mem_get_info(dev)[0])
    else:
        free = _available_ram()
    return max(1, int(MEMORY_FRACTION * free))


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - every supported platform has one of the two
        return 4 * 2**30


def _memory_guard(
    model: VerifiableModel,
    T: int,
    spec: Spec,
    method: BoundMethod,
    B: int,
    memory_limit: int | None,
    device: torch.device,
) -> int:
    """The bytes left for the backward passes' chunks: the effective limit (the given one,
    else :func:`default_memory_limit`) less the estimate of everything else, after checking
    that the estimate at one row per chunk fits the limit."""
    given = memory_limit is not None
    limit = memory_limit if memory_limit is not None else default_memory_limit(device)
    est = estimate_memory(model, T, spec, method.name, batch=B, chunk_size=1)
    if est > limit:
        what = (
            f"memory_limit={limit}"
            if given
            else f"the default limit of {limit} bytes (half the free memory of {device})"
        )
        raise BoundMemoryError(
            f"bounds(method={method.name!r}) needs about {est} bytes even with one row per "
            f"chunk; {what}; perturb fewer positions, "
            "use a shorter sequence, a smaller batch or a cheaper method",
            est,
        )
    rest: MethodName = "forward" if method.forward_linear else "ibp"
    return max(1, limit - estimate_memory(model, T, spec, rest, batch=B))


def _prepare(
    model: VerifiableModel,
    e: Tensor,
    spec: Spec,
    method: MethodName,
    alpha_steps: int,
    alpha_lr: float,
    memory_limit: int | None,
    chunk_size: int | None,
    device: Any,
) -> tuple[BoundMethod, Tensor, bool, int]:
    """The checks and set-up that every bound entry point shares: the method, the embeddings
    ``[B, T, D]`` in float64 on the resolved device, whether to squeeze the batch axis, and
    the memory limit the run must keep (see :func:`bounds`)."""
    check_model(model)
    meth = get_method(method)
    _check_spec(spec)
    _check_options(alpha_steps, alpha_lr, memory_limit, chunk_size, device)
    e, squeeze = _prep_e(model, e, device)
    B, T, _ = e.shape
    limit = _memory_guard(model, T, spec, meth, B, memory_limit, e.device)
    return meth, e, squeeze, limit


def bounds(
    model: VerifiableModel,
    e: Tensor,
    spec: Spec,
    method: MethodName = "crown",
    *,
    margins_for: Label | None = None,
    return_intermediate: bool = False,
    memory_limit: int | None = None,
    chunk_size: int | None = None,
    alpha_steps: int = 20,
    alpha_lr: float = 0.25,
    device: str | torch.device | None = None,
) -> Any:
    """Certified bounds on the logits of ``model`` for all embeddings allowed by ``spec``.

    Parameters
    ----------
    model : VerifiableModel
        E.g. a :class:`~toolkit.verify.TransformerClassifier` or a
        :class:`~toolkit.verify.MiniLMClassifier`.
    e : Tensor
        Word embeddings [B, T, D] (or [T, D]), ``model.embed(ids)``.
    spec : LpBall or Synonyms
        The perturbation set.
    method : {"ibp", "crown", "forward", "baf", "alpha-crown"}
        See :data:`~toolkit.verify.METHOD_TABLE`; ``"alpha-crown"`` is CROWN with the final
        planes optimised (:mod:`toolkit.verify.alpha`; intermediate bounds are CROWN's).
    margins_for : int or sequence of int or Tensor, optional
        Labels; if given, bounds on :math:`z_y - z_j` [B, C] (column y is 0), computed inside
        the linear bounds (not by subtracting intervals).
    return_intermediate : bool
        Also return an ordered dict node name -> (lower, upper) of the per-layer nodes (see
        :data:`toolkit.verify.graph.REPORTED`).
    memory_limit : int, optional
        Bytes; backward passes are chunked to fit; ``BoundMemoryError`` (a ``MemoryError``)
        if even the estimate at one row per chunk (:func:`estimate_memory`) exceeds it.
        Default: :func:`default_memory_limit` of the computation device (half of its free
        memory), so a run that cannot fit fails at once instead of exhausting the machine.
    chunk_size : int, optional
        Rows of the linear-bound matrices per backward chunk (overrides the limit).
    alpha_steps, alpha_lr : int, float
        Adam steps and step size of alpha-CROWN (in plane parameters that run over [0, 1]);
        ignored by the other methods.
    device : str or torch.device, optional
        Where to compute (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``); default: the
        ``TOOLKIT_DEVICE`` setting when it is ``"cpu"`` or ``"cuda"``, else the device of
        ``e`` (see :func:`toolkit._backend.resolve_device`).

    Returns
    -------
    (lower, upper) or (lower, upper, intermediate)
        float64 [B, C] (or [C] for 2-d ``e``), plus the dict when asked.

    Raises
    ------
    TypeError, ValueError
        For bad arguments, naming them (NaN or infinite entries of ``e`` too).
    BoundMemoryError
        When ``memory_limit`` cannot be met.

    Notes
    -----
    Works on any device: the bounds are computed on ``device`` (by default where ``e``
    lives; the model's weights are copied there), in float64, and returned there.

    Cost: CROWN runs one backward pass per row of every bounded node, so its time grows
    like :math:`T^3 D^2` per perturbed position (minutes at T = 256 on a CPU); runs of
    many backward chunks show a progress bar (``tqdm.auto``) and stop cleanly on
    KeyboardInterrupt (no state is kept between calls).

    Examples
    --------
    >>> from toolkit.verify import load_default_model, LpBall
    >>> model, vocab = load_default_model()
    >>> e = model.embed(vocab.encode("a wonderful film"))
    >>> lo, hi = bounds(model, e, LpBall(0.01, positions=[1]), "ibp")
    >>> lo.shape, bool((lo <= hi).all())
    (torch.Size([2]), True)
    """
    meth, e, squeeze, memory_limit = _prepare(
        model, e, spec, method, alpha_steps, alpha_lr, memory_limit, chunk_size, device
    )
    B, T, _ = e.shape
    dev = e.device
    y = None if margins_for is None else _labels(margins_for, B, model.num_classes, "margins_for")
    C = None if y is None else margin_matrix(y, B, model.num_classes, dev)
    graph = build_graph(model, T).to(dev)
    out, marg, inter = _propagate(
        graph,
        e,
        spec,
        meth,
        C,
        logits=False,
        report=return_intermediate,
        memory_limit=memory_limit,
        chunk_size=chunk_size,
        alpha_steps=alpha_steps,
        alpha_lr=alpha_lr,
    )
    if margins_for is not None:
        assert marg is not None
        assert y is not None
        out = _zero_label_column(marg, y.to(dev))
    assert out is not None
    lo, hi = out
    if squeeze:
        lo, hi = lo[0], hi[0]
        inter = OrderedDict((k, (a[0], b[0])) for k, (a, b) in inter.items())
    return (lo, hi, inter) if return_intermediate else (lo, hi)


def margin_bounds(
    model: VerifiableModel,
    e: Tensor,
    spec: Spec,
    label: Label,
    method: MethodName = "crown",
    **kw: Any,
) -> Any:
    """Bounds [B, C] on :math:`z_y - z_j` (column ``y`` is 0); see :func:`bounds`.

    ``label`` (an int, one int per sentence, or an integer tensor) is required: ``None``
    is a TypeError (use :func:`bounds` for logit bounds).

    Examples
    --------
    >>> from toolkit.verify import load_default_model, LpBall
    >>> model, vocab = load_default_model()
    >>> e = model.embed(vocab.encode("a wonderful film"))
    >>> lo, hi = margin_bounds(model, e, LpBall(0.01, positions=[1]), 1)
    >>> float(lo[1]), bool(lo[0] > 0)
    (0.0, True)
    """
    if label is None:
        raise TypeError(
            "label must be an int, a sequence of int or an integer tensor, got None "
            "(bounds() gives logit bounds)"
        )
    as_int_tensor("label", label)
    try:
        return bounds(model, e, spec, method, margins_for=label, **kw)
    except (TypeError, ValueError) as exc:  # bounds names the labels margins_for
        msg = str(exc)
        if msg.startswith("margins_for "):
            raise type(exc)("label" + msg.removeprefix("margins_for")) from None
        raise


@dataclass
class BoundProfile:
    """Logit bounds, margin bounds and per-layer bounds of one method, from one propagation.

    Attributes
    ----------
    method : str
        The method's name.
    label : Tensor
        The class ``y`` of every sentence, long [B] (or a 0-d tensor for one sentence).
    lower, upper : Tensor
        Bounds on the logits, float64 [B, C] (or [C]).
    margin_lower, margin_upper : Tensor
        Bounds on the margins :math:`z_y - z_j`, float64 [B, C] (or [C]; 0 at ``y``).
    intermediate : OrderedDict
        Per-layer node name (:data:`toolkit.verify.graph.REPORTED`) -> (lower, upper).
    seconds : float
        Wall time of the propagation.
    """

    method: str
    label: Tensor
    lower: Tensor
    upper: Tensor
    margin_lower: Tensor
    margin_upper: Tensor
    intermediate: Intermediate
    seconds: float

    @property
    def layers(self) -> list[str]:
        """The per-layer node names, in graph order."""
        return list(self.intermediate)

    @property
    def layer_width(self) -> Tensor:
        """Mean bound width :math:`\\overline{u - l}` of every per-layer node, [B, L] (or
        [L])."""
        lead = self.lower.dim() - 1  # 1 for a batch, 0 for one sentence
        widths = [(u - l).flatten(lead).mean(-1) for l, u in self.intermediate.values()]
        return torch.stack(widths, -1)

    @property
    def certified(self) -> Tensor:
        """True where every margin :math:`z_y - z_j` (j != y) is provably positive, [B]."""
        ml = self.margin_lower
        at_label = torch.nn.functional.one_hot(self.label, ml.shape[-1]).bool().to(ml.device)
        return torch.where(at_label, math.inf, ml).amin(-1) > 0


def bound_profile(
    model: VerifiableModel,
    e: Tensor,
    spec: Spec,
    label: Label | None = None,
    method: MethodName = "crown",
    *,
    memory_limit: int | None = None,
    chunk_size: int | None = None,
    alpha_steps: int = 20,
    alpha_lr: float = 0.25,
    device: str | torch.device | None = None,
) -> BoundProfile:
    """Logit bounds, margin bounds and per-layer bounds of ``method`` in one propagation.

    The logit bounds equal ``bounds(model, e, spec, method, return_intermediate=True)``, the
    margin bounds ``margin_bounds(model, e, spec, label, method, return_intermediate=True)``
    and the per-layer bounds are the intermediate ones; the intermediate bounds are computed
    once for all three.  (Reporting the per-layer nodes bounds them by backward passes too,
    which can only tighten ``"baf"``; the other methods give the same bounds either way.)

    Parameters
    ----------
    model, e, spec, method :
        As for :func:`bounds`.
    label : int or sequence of int or Tensor, optional
        The class of every sentence; default: the model's prediction on ``e``.
    memory_limit, chunk_size, alpha_steps, alpha_lr, device :
        As for :func:`bounds`.

    Returns
    -------
    BoundProfile

    Examples
    --------
    >>> from toolkit.verify import load_default_model, LpBall
    >>> model, vocab = load_default_model()
    >>> e = model.embed(vocab.encode("a wonderful film"))
    >>> prof = bound_profile(model, e, LpBall(0.01, positions=[1]), method="crown")
    >>> bool(prof.certified), prof.layers[0], prof.layer_width.shape
    (True, 'embed', torch.Size([7]))
    """
    meth, e64, squeeze, memory_limit = _prepare(
        model, e, spec, method, alpha_steps, alpha_lr, memory_limit, chunk_size, device
    )
    B, T, _ = e64.shape
    dev = e64.device
    if label is None:
        with torch.no_grad():
            label = _predict(model, e64)
    y = _labels(label, B, model.num_classes).to(dev)
    start = time.perf_counter()
    graph = build_graph(model, T).to(dev)
    out, marg, inter = _propagate(
        graph,
        e64,
        spec,
        meth,
        margin_matrix(y, B, model.num_classes, dev),
        logits=True,
        report=True,
        memory_limit=memory_limit,
        chunk_size=chunk_size,
        alpha_steps=alpha_steps,
        alpha_lr=alpha_lr,
    )
    seconds = time.perf_counter() - start
    assert out is not None and marg is not None
    mlo, mhi = _zero_label_column(marg, y)
    lo, hi = out
    if squeeze:
        y, lo, hi, mlo, mhi = y[0], lo[0], hi[0], mlo[0], mhi[0]
        inter = OrderedDict((k, (a[0], b[0])) for k, (a, b) in inter.items())
    return BoundProfile(meth.name, y, lo, hi, mlo, mhi, inter, seconds)


def _predict(model: VerifiableModel, e: Tensor) -> Tensor:
    """The model's predicted class on ``e`` [B, T, D], computed in float64 on ``e``'s device."""
    params = next(model.parameters())
    if params.dtype == F64 and params.device == e.device:
        return model(e).argmax(-1)
    return copy.deepcopy(model).to(device=e.device, dtype=F64)(e).argmax(-1)


def graph_bounds(
    graph: Graph,
    e: Tensor,
    spec: Spec,
    method: MethodName = "crown",
    *,
    return_intermediate: bool = False,
    memory_limit: int | None = None,
    chunk_size: int | None = None,
    alpha_steps: int = 20,
    alpha_lr: float = 0.25,
    device: str | torch.device | None = None,
) -> Any:
    """Bounds on the output node of any :class:`~toolkit.verify.graph.Graph`.

    The same engine as :func:`bounds`, for a hand-built graph (one relaxation, a softmax,
    a block) instead of a model's.

    Parameters
    ----------
    graph : Graph
        Node ``input`` [T, D] (batch implicit) first; the last node is the output.
    e : Tensor
        Input values [B, T, D] (float, any device); ``spec`` perturbs them.
    spec, method, return_intermediate, memory_limit, chunk_size, alpha_steps, alpha_lr, device :
        As for :func:`bounds` (``memory_limit`` chunks the backward passes; no default).

    Returns
    -------
    (lower, upper) or (lower, upper, intermediate)
        float64 ``[B, *output shape]``.

    Examples
    --------
    >>> from toolkit.verify.relaxations import add_softmax
    >>> g = Graph()
    >>> _ = add_softmax(g, g.add("input", None, (), (1, 3)), "softmax")
    >>> x = torch.tensor([[[1.0, 0.0, -0.5]]])
    >>> lo, hi = graph_bounds(g, x, LpBall(0.5, p="inf"), "crown")
    >>> p = torch.softmax(x.double(), -1)
    >>> bool((lo <= p).all() and (p <= hi).all())
    True
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"graph must be a toolkit.verify.graph.Graph, got {type(graph).__name__}")
    if not graph.nodes or next(iter(graph.nodes)) != "input":
        raise ValueError("graph must start with the node 'input'")
    meth = get_method(method)
    _check_spec(spec)
    _check_options(alpha_steps, alpha_lr, memory_limit, chunk_size, device)
    shape = graph.nodes["input"].shape
    check_tensor("e", e, dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64))
    if e.dim() < 1 or e.shape[0] < 1 or tuple(e.shape[1:]) != tuple(shape):
        raise ValueError(
            f"e must have shape [B, {', '.join(map(str, shape))}] with B >= 1, got {tuple(e.shape)}"
        )
    check_finite_tensor("e", e)
    e64 = e.detach().to(device=compute_device(device, e), dtype=F64)
    out, _, inter = _propagate(
        graph.to(e64.device),
        e64,
        spec,
        meth,
        None,
        logits=True,
        report=return_intermediate,
        memory_limit=memory_limit,
        chunk_size=chunk_size,
        alpha_steps=alpha_steps,
        alpha_lr=alpha_lr,
    )
    assert out is not None
    return (*out, inter) if return_intermediate else out


def certified_radius(
    model: VerifiableModel,
    e: Tensor,
    label: Label,
    positions: Sequence[int],
    p: PNorm = 2,
    method: MethodName = "crown",
    tol: float = 1e-3,
    max_eps: float = 1.0,
    **kw: Any,
) -> Tensor:
    """Largest eps (to ``tol``) for which ``method`` proves the label, per sentence and position.

    For every sentence b and every position t in ``positions`` the perturbation is one Lp
    ball of radius eps on position t alone.  Bisection on [0, max_eps]: an eps counts as
    certified when all margin lower bounds :math:`z_y - z_j` (j != y) are > 0.  All (b, t)
    pairs run as one batch.  Bisection assumes certification is monotone in eps, which holds
    up to relaxation noise; each returned radius was itself certified.

    Parameters
    ----------
    model, e, method :
        As for :func:`bounds`.
    label : int or sequence of int or Tensor
        The class of every sentence.
    positions : sequence of int
        Positions, each perturbed alone.
    p : 1, 2, float('inf') or "inf"
        The norm.
    tol : float
        Resolution of the bisection (> 0 and < ``max_eps``).  A ``tol`` below the float64
        spacing near the radius is allowed: the bisection stops when the interval can no
        longer shrink (at most about 1100 halvings).
    max_eps : float
        Upper end of the search (finite, > 0).
    **kw :
        ``memory_limit``, ``chunk_size``, ``alpha_steps``, ``alpha_lr``, ``device`` (see
        :func:`bounds`; ``memory_limit`` only chunks the backward passes here).

    Returns
    -------
    Tensor
        float64 [B, P] ([P] for 2-d ``e``) on ``e``'s device; a value equal to ``max_eps``
        means "at least max_eps", 0 means not even eps = tol/2^k is certified (or the clean
        prediction is wrong).

    Examples
    --------
    >>> from toolkit.verify import load_default_model
    >>> model, vocab = load_default_model()
    >>> e = model.embed(vocab.encode("a wonderful film"))
    >>> r = certified_radius(model, e, 1, [1], method="crown", tol=0.05)
    >>> 0.1 < float(r[0]) < 0.3
    True
    """
    check_model(model)
    meth = get_method(method)
    unknown = set(kw) - {"memory_limit", "chunk_size", "alpha_steps", "alpha_lr", "device"}
    if unknown:
        raise TypeError(f"certified_radius got unexpected keyword arguments {sorted(unknown)}")
    _check_options(**kw)
    device = kw.pop("device", None)
    p = normalize_p(p)
    tol = check_positive("tol", tol)
    max_eps = check_real("max_eps", max_eps, 0.0, lo_open=True)
    if tol >= max_eps:
        raise ValueError(f"tol must be smaller than max_eps={max_eps!r}, got tol={tol!r}")
    e, squeeze = _prep_e(model, e, device)
    B, T, _D = e.shape
    if positions is None:
        raise TypeError("positions must be a sequence of int, got None")
    pos = LpBall(0.0, p, positions).domains(e)[0].pos[0].tolist()
    P = len(pos)
    dev = e.device
    y = _labels(label, B, model.num_classes).repeat_interleave(P).to(dev)
    eb = e.repeat_interleave(P, 0)
    pb = torch.tensor(pos, device=dev).repeat(B)[:, None]
    graph = build_graph(model, T).to(dev)
    Cm = margin_matrix(y, B * P, model.num_classes, dev)
    mask = torch.ones(B * P, model.num_classes, dtype=torch.bool, device=dev)
    mask[torch.arange(B * P, device=dev), y] = False

    def certified(eps: Tensor) -> Tensor:
        dom = LpDomain(eb, pb, eps, p)
        lo, _, _ = Propagator(graph, dom, meth, **kw).run(Cm)
        return torch.where(mask, lo, math.inf).amin(1) > 0

    lo = torch.zeros(B * P, dtype=F64, device=dev)
    hi = torch.full((B * P,), float(max_eps), dtype=F64, device=dev)
    ok0 = certified(torch.zeros(B * P, dtype=F64, device=dev))
    okm = certified(hi.clone())
    lo = torch.where(okm, hi, lo)
    active = ok0 & ~okm
    hi = torch.where(ok0, hi, torch.zeros_like(hi))
    while bool(active.any()):
        mid = 0.5 * (lo + hi)
        # a tol below the float64 spacing: stop where the midpoint is an end point
        active = active & ((hi - lo) > tol) & (mid > lo) & (mid < hi)
        if not bool(active.any()):
            break
        ok = certified(torch.where(active, mid, lo))
        lo = torch.where(active & ok, mid, lo)
        hi = torch.where(active & ~ok, mid, hi)
    out = lo.reshape(B, P)
    return out[0] if squeeze else out


def estimate_memory(
    model: VerifiableModel,
    seq_len: int,
    spec: Spec | Sequence[int] | None = None,
    method: MethodName = "crown",
    *,
    batch: int = 1,
    chunk_size: int | None = None,
    memory_limit: int | None = None,
) -> int:
    """Estimated peak bytes of :func:`bounds` before anything is allocated.

    Terms (8 bytes per float64): the graph's constants; interval bounds of all nodes
    (2 x numel) and the planes of the nonlinear ones (4 x numel); for methods with forward
    linear bounds 1.6 x (2 x n x the most node entries alive at once), n = perturbed
    positions x D; for methods with backward passes ``_LIVE`` (8) back-substitution
    matrices of ``rows x (largest node it passes + n)``, maximised over the bounded nodes,
    ``rows`` the chunk (2 x the node's entries when unchunked; ``memory_limit`` defaults to
    :func:`default_memory_limit` of the CPU).  Checked against peaks measured by a counting
    allocator (CPU) and ``torch.cuda.max_memory_allocated`` (GPU) to within 25% for CROWN
    and forward.

    Parameters
    ----------
    model, method, chunk_size, memory_limit :
        As for :func:`bounds`.
    seq_len : int
        Sequence length T.
    spec : LpBall or Synonyms or sequence of int or None
        The perturbation, or the list of perturbed positions (default: one position).
    batch : int
        Sentences per call.

    Returns
    -------
    int
        Bytes.

    Examples
    --------
    >>> from toolkit.verify import TransformerClassifier
    >>> m = TransformerClassifier(20, dim=8, heads=2)
    >>> estimate_memory(m, 5, method="ibp") < estimate_memory(m, 5, method="crown")
    True
    """
    check_model(model)
    meth = get_method(method)
    check_length(model, seq_len, "seq_len")
    check_int("batch", batch)
    _check_options(memory_limit=memory_limit, chunk_size=chunk_size)
    if spec is None:
        S = 1
    elif isinstance(spec, (LpBall, Synonyms)):
        S = seq_len if spec.positions is None else len(spec.positions)
        if isinstance(spec, Synonyms):
            S = min(S, spec.budget)
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        S = len([check_int(f"spec[{i}]", t, 0, seq_len - 1) for i, t in enumerate(spec)])
    else:
        raise TypeError(
            "spec must be an LpBall, a Synonyms, a sequence of positions or None, "
            f"got {type(spec).__name__}"
        )
    g = build_graph(model, seq_len)
    sizes = {name: math.prod(node.shape) for name, node in g.nodes.items()}
    big = max(sizes.values())
    n = S * model.dim
    const = sum(
        t.numel() * t.element_size()
        for node in g.nodes.values()
        if node.op is not None
        for t in vars(node.op).values()
        if isinstance(t, Tensor)
    )
    nonlinear = sum(sizes[k] for k, node in g.nodes.items() if node.op and node.op.nonlinear)
    # interval bounds of every node and the planes of every nonlinear one
    est = const + (2 * sum(sizes.values()) + 4 * nonlinear) * batch * 8
    if meth.forward_linear:
        est += int(_FORWARD_LIVE * 2 * _live_linear_peak(g, meth) * n * batch * 8)
    if meth.backward:
        limit = memory_limit if memory_limit is not None else default_memory_limit("cpu")
        prop = Propagator(g, None, meth)  # type: ignore[arg-type]  # only the graph is read
        worst = 0
        for name in prop.need_set():
            N = sizes[name]
            rows = rows_per_chunk(batch, big, limit, chunk_size, 2 * N)
            node = g.nodes[name]
            strict = isinstance(node.op, Linear) and len(node.inputs) == 1
            reach = g.ancestors(node.inputs[0]) if strict else g.ancestors(name)
            worst = max(worst, rows * (max(sizes[k] for k in reach) + n))
        est += _LIVE * worst * batch * 8
    return int(est)


#: live forward linear bounds at the peak, relative to the live nodes' (inputs, output and
#: the temporaries of the op being processed; measured with tests/verify/_peak.py)
_FORWARD_LIVE = 1.6


def _live_linear_peak(g: Graph, meth: BoundMethod) -> int:
    """The most node entries whose forward linear bounds are alive at once (the engine
    frees a node's bounds after its last consumer, except the kept attention outputs)."""
    sizes = {name: math.prod(node.shape) for name, node in g.nodes.items()}
    consumers = g.consumers()
    refs = {k: len(c) for k, c in consumers.items()}
    keep = set()
    if meth.stops_at_attention:
        keep = {
            k
            for k, nd in g.nodes.items()
            if nd.attention and any(not g.nodes[c].attention for c in consumers[k])
        }
    live = peak = 0
    for name, node in g.nodes.items():
        live += sizes[name]
        peak = max(peak, live)
        for i in node.inputs:
            refs[i] -= 1
            if refs[i] == 0 and i not in keep and i != g.output:
                live -= sizes[i]
    return peak
