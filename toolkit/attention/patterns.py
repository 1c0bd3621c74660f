r"""Attention patterns as values: one small frozen object per method, with its mask and style.

Every sparse method of :mod:`toolkit.attention` keeps, in each row of the scores, a set
:math:`K_i` of keys; its **density** is the kept fraction :math:`|K_i| / L_k` (a
:class:`NM` pattern keeps :math:`n/m`, the others the :func:`~toolkit.attention.keep_count`
of their density).  A pattern is a value: it compares and hashes by its parameters, and
offers

* ``mask(q, k, scale=..., attn_mask=...)`` -- the kept set, bool ``[..., Lq, Lk]``;
* ``attention(q, k, v, scale=..., attn_mask=..., return_probs=...)`` -- attention on that
  set (usable as a model's ``attention_fn``);
* ``density``, ``label`` (a short string that :func:`parse_pattern` reads back: ``"2:4"``,
  ``"topk@0.5"``, ``"dsa@0.25 r=8 b=2"``), ``name`` (for tables and legends) and ``style``
  (the name and colour of its kind, from :data:`PATTERN_STYLES`, shared by the report and
  the explorer).

========================  =====================================================================
:class:`Dense`            every key (density 1)
:class:`NM`               the ``n`` largest scores of every ``m`` consecutive keys (DFSS)
:class:`TopK`             the oracle: the largest scores of the row
:class:`DSA`              DSA's prediction from a rank-``rank`` projection quantized to ``bits``
:class:`Local`            a sliding window around the query's key
:class:`Strided`          keys spaced evenly, starting at the query's key
========================  =====================================================================

The dynamic patterns (N:M, top-k, DSA) see the scores with ``attn_mask`` applied, as the
attention functions do.  Strings such as ``"2:4"`` and ``"dsa@0.25"`` are read in one place,
:func:`parse_pattern`; the public functions that take them call it.

>>> import torch
>>> from toolkit.attention import NM, DSA, parse_pattern
>>> parse_pattern("2:4") == NM(2, 4), NM(2, 4).density, DSA(0.25, bits=2).label
(True, 0.5, 'dsa@0.25 b=2')
>>> q = k = torch.randn(2, 8, 16)
>>> NM(1, 4).mask(q, k).sum(-1).unique().tolist()
[2]
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeAlias, get_args

import torch

from .._checks import check_seed
from ..models._attention import (
    AttentionOutput,
    attention_scores,
    check_attn_mask,
    check_qkv,
    masked_attention,
    resolve_scale,
)
from ._nm import check_nm, nm_mask
from .dsa import _predict_keep, check_dsa, dsa_attention
from .masks import _row_topk_op, check_density, keep_count, local_mask, strided_mask
from .sparse import nm_attention

__all__ = [
    "DSA",
    "NM",
    "PATTERN_KINDS",
    "PATTERN_STYLES",
    "Dense",
    "Local",
    "Pattern",
    "PatternKind",
    "PatternLike",
    "PatternStyle",
    "Strided",
    "TopK",
    "parse_pattern",
]


def check_sequence(name: str, value: Any, *, nonempty: bool = False) -> Sequence[Any]:
    """``value`` as a sequence (list, tuple, ...), refusing a lone string or a non-sequence.

    A string is a sequence of characters, so ``methods="nm"`` would silently run
    ``"n"`` and ``"m"``; it is refused with a hint instead.

    >>> check_sequence("nm", ("2:4",))
    ('2:4',)
    >>> check_sequence("nm", "2:4")
    Traceback (most recent call last):
    ...
    TypeError: nm must be a sequence such as a list or tuple, got the str '2:4' (write ('2:4',))
    """
    if isinstance(value, str):
        raise TypeError(
            f"{name} must be a sequence such as a list or tuple, got the str {value!r} "
            f"(write ({value!r},))"
        )
    if not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a sequence such as a list or tuple, got {type(value).__name__}"
        )
    if nonempty and len(value) == 0:
        raise ValueError(f"{name} must not be empty, got {name}={value!r}")
    return value


#: The names of the pattern kinds, one per class.
PatternKind: TypeAlias = Literal["nm", "topk", "dsa", "local", "strided", "dense"]
PATTERN_KINDS: tuple[PatternKind, ...] = get_args(PatternKind)


@dataclass(frozen=True)
class PatternStyle:
    """How one kind of pattern is drawn: its display ``name`` and its ``color``.

    >>> PATTERN_STYLES["dsa"]
    PatternStyle(name='DSA', color='#d62728')
    """

    name: str
    color: str


#: Kind -> style; the report and the explorer draw every method with these.
PATTERN_STYLES: Mapping[PatternKind, PatternStyle] = MappingProxyType(
    {
        "nm": PatternStyle("N:M (DFSS)", "#1f77b4"),
        "topk": PatternStyle("top-k oracle", "#2ca02c"),
        "dsa": PatternStyle("DSA", "#d62728"),
        "local": PatternStyle("local window", "#9467bd"),
        "strided": PatternStyle("strided", "#8c564b"),
        "dense": PatternStyle("dense", "#7f7f7f"),
    }
)


class Pattern(ABC):
    """Base of the pattern values (see the module docstring)."""

    kind: ClassVar[PatternKind]

    @property
    @abstractmethod
    def density(self) -> float:
        """The nominal kept fraction of every row, in ``(0, 1]``."""

    @property
    def label(self) -> str:
        """A short string that :func:`parse_pattern` reads back into an equal pattern."""
        return f"{self.kind}@{self.density:g}"

    @property
    def style(self) -> PatternStyle:
        """The display name and colour of this pattern's kind (:data:`PATTERN_STYLES`)."""
        return PATTERN_STYLES[self.kind]

    @property
    def name(self) -> str:
        """Display name: the method and its parameters other than the density."""
        return self.style.name

    @property
    def family(self) -> str:
        """Legend name of a curve of such patterns over density (``name``, but
        ``"N:M (DFSS)"`` for every :class:`NM`)."""
        return self.name

    def __str__(self) -> str:
        return self.label

    def mask(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        *,
        scale: float | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The kept set of every row, bool ``[..., Lq, Lk]`` on ``q``'s device.

        Parameters
        ----------
        q, k : torch.Tensor
            ``[..., Lq, d]`` and ``[..., Lk, d]``, one float dtype and device.
        scale : float, optional
            Score scale, default ``1/sqrt(d)``.
        attn_mask : torch.Tensor, optional
            Additive float or bool (``True`` = attend) mask, broadcastable to the scores;
            the dynamic patterns rank the masked scores.

        Returns
        -------
        torch.Tensor
            Bool, the broadcast scores' shape; empty (and nothing else) when that shape is
            (no queries, no keys or an empty batch).

        Raises
        ------
        TypeError, ValueError
            On a bad tensor, mask or scale (named in the message); for :class:`DSA`, also
            when ``q`` or ``k`` holds NaN or an infinity.
        """
        shape = check_qkv(q, k)
        check_attn_mask(attn_mask, shape, q.device)
        s = resolve_scale(scale, q.shape[-1])
        if 0 in shape:
            return torch.zeros(shape, dtype=torch.bool, device=q.device)
        return self._keep(q.detach(), k.detach(), shape, s, attn_mask)

    @abstractmethod
    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        """The mask on checked, detached inputs with the scale resolved."""

    def attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        scale: float | None = None,
        attn_mask: torch.Tensor | None = None,
        return_probs: bool = False,
    ) -> AttentionOutput:
        """Attention on this pattern's kept set, as :func:`~toolkit.attention.masked_attention`
        computes it; usable as a model's ``attention_fn``.

        Parameters
        ----------
        q, k, v : torch.Tensor
            ``[..., Lq, d]``, ``[..., Lk, d]``, ``[..., Lk, dv]``; one float dtype and device.
        scale, attn_mask
            As in :meth:`mask`.
        return_probs : bool
            Also return the sparse probabilities ``[..., Lq, Lk]``.

        Returns
        -------
        torch.Tensor or tuple of torch.Tensor
            ``O`` ``[..., Lq, dv]``, and the probabilities with ``return_probs``.
        """
        return self._attention(q, k, v, scale, attn_mask, return_probs)

    def _attention(self, q, k, v, scale, attn_mask, return_probs) -> AttentionOutput:
        keep = self.mask(q, k, scale=scale, attn_mask=attn_mask)
        return masked_attention(q, k, v, keep, scale, attn_mask, return_probs)


#: A pattern, or a string :func:`parse_pattern` reads.
PatternLike: TypeAlias = Pattern | str


def _set(obj: object, **values: object) -> None:
    # Frozen dataclasses store their checked, normalised fields through object.__setattr__.
    for key, value in values.items():
        object.__setattr__(obj, key, value)


@dataclass(frozen=True)
class Dense(Pattern):
    """Every key: dense attention.

    >>> Dense().label, Dense().density
    ('dense', 1.0)
    """

    kind: ClassVar[PatternKind] = "dense"

    @property
    def density(self) -> float:
        return 1.0

    @property
    def label(self) -> str:
        return "dense"

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        return torch.ones(shape, dtype=torch.bool, device=q.device)

    def _attention(self, q, k, v, scale, attn_mask, return_probs) -> AttentionOutput:
        return masked_attention(q, k, v, None, scale, attn_mask, return_probs)


@dataclass(frozen=True)
class NM(Pattern):
    """N:M pruning (DFSS): the ``n`` largest scores of every ``m`` consecutive keys
    (:func:`~toolkit.attention.nm_mask`); density :math:`n/m`.

    >>> NM(2, 4).label, NM(2, 4).name, NM(1, 8).density
    ('2:4', '2:4 (DFSS)', 0.125)
    """

    n: int = 2
    m: int = 4
    kind: ClassVar[PatternKind] = "nm"

    def __post_init__(self) -> None:
        n, m = check_nm(self.n, self.m)
        _set(self, n=n, m=m)

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def label(self) -> str:
        return f"{self.n}:{self.m}"

    @property
    def name(self) -> str:
        return f"{self.label} (DFSS)"

    @property
    def family(self) -> str:
        return self.style.name

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        return nm_mask(attention_scores(q, k, scale, attn_mask), self.n, self.m)

    def _attention(self, q, k, v, scale, attn_mask, return_probs) -> AttentionOutput:
        return nm_attention(q, k, v, self.n, self.m, scale, attn_mask, return_probs)


@dataclass(frozen=True)
class _Density(Pattern):
    """A pattern with a free density in ``(0, 1]``."""

    density: float = 0.5  # a field where the base class has a read-only property

    def __post_init__(self) -> None:
        _set(self, density=check_density("density", self.density))


@dataclass(frozen=True)
class TopK(_Density):
    """The oracle: the :func:`~toolkit.attention.keep_count` largest true scores of each row
    (:func:`~toolkit.attention.topk_mask`).

    >>> TopK(0.25).label
    'topk@0.25'
    """

    kind: ClassVar[PatternKind] = "topk"

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        scores = attention_scores(q, k, scale, attn_mask)
        return _row_topk_op(scores, keep_count(self.density, shape[-1]))


@dataclass(frozen=True)
class Local(_Density):
    """A sliding window around the query's key (:func:`~toolkit.attention.local_mask`).

    >>> Local(0.5).mask(torch.zeros(4, 1), torch.zeros(4, 1)).int().tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    """

    kind: ClassVar[PatternKind] = "local"

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        return local_mask(shape[-2], shape[-1], self.density, device=q.device).expand(shape)


@dataclass(frozen=True)
class Strided(_Density):
    """Evenly spaced keys from the query's key on (:func:`~toolkit.attention.strided_mask`).

    >>> Strided(0.5).mask(torch.zeros(4, 1), torch.zeros(4, 1)).int().tolist()
    [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    """

    kind: ClassVar[PatternKind] = "strided"

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        return strided_mask(shape[-2], shape[-1], self.density, device=q.device).expand(shape)


#: DSA's defaults, left out of its label.
_DSA_DEFAULTS = {"rank": 16, "bits": 4, "seed": 0}
_DSA_KEYS = {"r": "rank", "b": "bits", "seed": "seed"}


@dataclass(frozen=True)
class DSA(_Density):
    """DSA's predicted pattern (:func:`~toolkit.attention.dsa_mask` at sparsity
    ``1 - density``): a rank-``rank`` random projection seeded by ``seed``, quantized to
    ``bits`` bits.  At density 1 it keeps everything.

    >>> DSA(0.5).name, DSA(0.25, rank=8, seed=3).label
    ('DSA (rank 16, 4 bits)', 'dsa@0.25 r=8 seed=3')
    """

    rank: int = 16
    bits: int = 4
    seed: int = 0
    kind: ClassVar[PatternKind] = "dsa"

    def __post_init__(self) -> None:
        super().__post_init__()
        rank, bits = check_dsa(self.rank, self.bits)
        _set(self, rank=rank, bits=bits, seed=check_seed(self.seed))

    @property
    def label(self) -> str:
        extra = "".join(
            f" {short}={getattr(self, key)}"
            for short, key in _DSA_KEYS.items()
            if getattr(self, key) != _DSA_DEFAULTS[key]
        )
        return super().label + extra

    @property
    def name(self) -> str:
        seed = f", seed {self.seed}" if self.seed else ""
        return f"DSA (rank {self.rank}, {self.bits} bits{seed})"

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def _keep(self, q, k, shape, scale, attn_mask) -> torch.Tensor:
        return _predict_keep(
            q, k, self.density, self.rank, self.bits, self._generator(), scale, attn_mask
        )

    def _attention(self, q, k, v, scale, attn_mask, return_probs) -> AttentionOutput:
        if self.density == 1:  # dsa_attention's sparsity lies in (0, 1)
            return Dense().attention(q, k, v, scale, attn_mask, return_probs)
        return dsa_attention(
            q,
            k,
            v,
            1.0 - self.density,
            self.rank,
            self.bits,
            self.seed,
            scale,
            attn_mask,
            return_probs,
        )


_DENSITY_KINDS: dict[str, type[_Density]] = {
    "topk": TopK,
    "dsa": DSA,
    "local": Local,
    "strided": Strided,
}
_NM = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def _from_method(
    method: object,
    density: float | None,
    name: str = "method",
    *,
    rank: int = 16,
    bits: int = 4,
    seed: int = 0,
) -> Pattern:
    """The pattern of ``method`` -- ``"dense"``, ``"N:M"`` (both with ``density=None``) or a
    kind of :data:`_DENSITY_KINDS` with a ``density`` -- and DSA's ``rank``/``bits``/``seed``."""
    if isinstance(method, Pattern):
        if density is not None:
            raise ValueError(f"{name} {method!r} fixes its density; got density={density!r}")
        return method
    if not isinstance(method, str):
        raise TypeError(f"{name} must be a Pattern or a str, got {type(method).__name__}")
    if method == "dense" or ":" in method:
        if density is not None:
            raise ValueError(f"{name} {method!r} fixes its density; got density={density!r}")
        if method == "dense":
            return Dense()
        match = _NM.fullmatch(method)
        if match is None:
            raise ValueError(f"an N:M pattern must look like '2:4', got {name}={method!r}")
        return NM(int(match[1]), int(match[2]))
    cls = _DENSITY_KINDS.get(method)
    if cls is None:
        raise ValueError(
            f"{name} must be 'dense', 'N:M' or one of {tuple(_DENSITY_KINDS)}, got {method!r}"
        )
    if density is None:
        raise ValueError(f"{name} {method!r} needs a density in (0, 1]")
    if cls is DSA:
        return DSA(density, rank=rank, bits=bits, seed=seed)
    return cls(density)


def parse_pattern(spec: PatternLike, name: str = "pattern") -> Pattern:
    """The pattern a string names (a pattern is returned as it is).

    Strings: ``"dense"``, ``"N:M"`` (``"2:4"``), ``"<kind>@<density>"`` with kind ``topk``,
    ``dsa``, ``local`` or ``strided`` (``"topk@0.5"``), and for DSA optionally
    ``r=<rank>``, ``b=<bits>``, ``seed=<seed>`` after a space (``"dsa@0.25 r=8 b=2"``).
    Every pattern's ``label`` reads back into an equal pattern.

    Parameters
    ----------
    spec : Pattern or str
        The pattern or its string.
    name : str
        The argument's name in error messages.

    Returns
    -------
    Pattern

    Raises
    ------
    TypeError
        If ``spec`` is neither a pattern nor a string.
    ValueError
        If the string is malformed or a parameter is out of range.

    Examples
    --------
    >>> parse_pattern("dsa@0.25 r=8 b=2")
    DSA(density=0.25, rank=8, bits=2, seed=0)
    >>> all(parse_pattern(p.label) == p for p in (NM(1, 2), TopK(0.3), Local(1.0), Dense()))
    True
    """
    if isinstance(spec, Pattern):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"{name} must be a Pattern or a str, got {type(spec).__name__}")
    try:
        return _parse(spec, name)
    except ValueError as exc:
        if str(exc).startswith(name):
            raise
        # A parameter's own message ("n must satisfy ...") gets the string it came from.
        raise ValueError(f"{name} {spec!r}: {exc}") from None


def _parse(spec: str, name: str) -> Pattern:
    if "@" not in spec:
        return _from_method(spec, None, name)
    kind, _, rest = spec.partition("@")
    if kind not in _DENSITY_KINDS:
        raise ValueError(
            f"{name} must be 'dense', 'N:M' or '<kind>@<density>' with kind in "
            f"{tuple(_DENSITY_KINDS)}, got {spec!r}"
        )
    value, *params = rest.split() or [""]
    try:
        density = float(value)
    except ValueError:
        raise ValueError(f"{name} {spec!r} needs a density in (0, 1] after '@'") from None
    extra: dict[str, int] = {}
    for item in params:
        key, _, number = item.partition("=")
        if kind != "dsa" or key not in _DSA_KEYS or not number.isdigit():
            raise ValueError(
                f"{name} {spec!r}: only DSA takes parameters, as r=<rank>, b=<bits>, "
                f"seed=<seed>; got {item!r}"
            )
        extra[_DSA_KEYS[key]] = int(number)  # DSA checks the ranges
    return _from_method(kind, density, name, **extra)
