"""What a model must offer to be bounded: :class:`VerifiableModel`.

The bound engine never looks inside a model class.  It needs

* the sizes ``dim``, ``heads``, ``num_classes`` and ``max_len``;
* ``embed(token_ids)``: word embeddings of token ids (the perturbation acts on them);
* ``check_embeddings(e)``: a clear error unless ``e`` is a float tensor ``[B, T, dim]``;
* ``forward(e)``: logits ``[B, num_classes]`` of embeddings (what the bounds enclose);
* ``graph(T)``: the :class:`~toolkit.verify.graph.Graph` of ``forward`` at length ``T``,
  built from the shared pieces of :mod:`toolkit.verify.graph` (:func:`~toolkit.verify.graph.
  add_encoder_layer`, :func:`~toolkit.verify.graph.add_mean_head`), whose nodes the bound
  methods walk.

:func:`~toolkit.verify.bounds`, :func:`~toolkit.verify.build_graph` and the rest accept any
subclass; :class:`~toolkit.verify.TransformerClassifier` and
:class:`~toolkit.verify.MiniLMClassifier` are the two shipped ones.  ``embed`` and
``check_embeddings`` are implemented here once, from the ``embedding`` table (an
:class:`torch.nn.Embedding`) that every subclass sets.

>>> from toolkit.verify import TransformerClassifier
>>> isinstance(TransformerClassifier(10, dim=8, heads=2), VerifiableModel)
True
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._checks import check_int, check_tensor

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ["VerifiableModel", "check_model"]


class VerifiableModel(nn.Module, abc.ABC):
    """Base class of the classifiers of word embeddings that :mod:`toolkit.verify` bounds.

    Subclasses set ``embedding`` (:class:`torch.nn.Embedding`), the sizes ``dim``,
    ``heads``, ``num_classes`` (>= 2) and ``max_len``, and implement :meth:`forward` and
    :meth:`graph` (module docstring).

    Attributes
    ----------
    embedding : torch.nn.Embedding
        Word embedding table ``[vocab, dim]``.
    dim, heads, num_classes, max_len : int
        Width, attention heads, classes and the longest sequence.
    """

    embedding: nn.Embedding
    dim: int
    heads: int
    num_classes: int
    max_len: int

    def embed(self, token_ids: Tensor) -> Tensor:
        """Word embeddings (no positions) of token ids.

        Parameters
        ----------
        token_ids : Tensor or sequence of int
            Integer ids ``[B, T]`` or ``[T]`` in ``[0, vocab)``.

        Returns
        -------
        Tensor
            ``[B, T, dim]`` (or ``[T, dim]``), in the embedding table's dtype.

        Raises
        ------
        TypeError
            For non-integer ids.
        ValueError
            For ids outside the vocabulary.

        Examples
        --------
        >>> from toolkit.verify import TransformerClassifier
        >>> TransformerClassifier(10, dim=8, heads=2).embed(torch.tensor([1, 2])).shape
        torch.Size([2, 8])
        """
        ids = as_int_tensor("token_ids", token_ids)
        n = self.embedding.num_embeddings
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
            raise ValueError(
                f"token_ids must lie in [0, {n}), got range [{int(ids.min())}, {int(ids.max())}]"
            )
        return self.embedding(ids.long())

    def check_embeddings(self, e: object) -> None:
        """Raise unless ``e`` is a floating-point tensor ``[B, T, dim]``, ``1 <= T <= max_len``.

        Raises
        ------
        TypeError
            When ``e`` is not a floating-point tensor.
        ValueError
            When its shape is wrong.

        Examples
        --------
        >>> from toolkit.verify import TransformerClassifier
        >>> TransformerClassifier(10, dim=8, heads=2).check_embeddings(torch.zeros(1, 3, 4))
        Traceback (most recent call last):
        ...
        ValueError: e must have shape [B, T, 8] with 1 <= T <= 32, got (1, 3, 4)
        """
        check_tensor("e", e)
        assert isinstance(e, Tensor)
        if not e.is_floating_point():
            raise TypeError(f"e must be a floating-point torch.Tensor, got dtype {e.dtype}")
        if e.dim() != 3 or e.shape[-1] != self.dim or not 1 <= e.shape[1] <= self.max_len:
            raise ValueError(
                f"e must have shape [B, T, {self.dim}] with 1 <= T <= "
                f"{self.max_len}, got {tuple(e.shape)}"
            )

    @abc.abstractmethod
    def forward(self, e: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` of word embeddings ``e`` ``[B, T, dim]``."""

    @abc.abstractmethod
    def graph(self, T: int) -> Graph:
        """The graph IR of :meth:`forward` for sequence length ``T`` (float64 weights)."""


def check_model(model: object) -> VerifiableModel:
    """``model`` if it is a :class:`VerifiableModel`, else a TypeError naming it.

    Examples
    --------
    >>> check_model("a model")
    Traceback (most recent call last):
    ...
    TypeError: model must be a toolkit.verify.VerifiableModel (e.g. a TransformerClassifier or a MiniLMClassifier), got str
    """  # noqa: E501
    if not isinstance(model, VerifiableModel):
        raise TypeError(
            "model must be a toolkit.verify.VerifiableModel (e.g. a TransformerClassifier or "
            f"a MiniLMClassifier), got {type(model).__name__}"
        )
    return model


def as_int_tensor(name: str, value: object) -> Tensor:
    """``value`` (an int, a sequence of int or an integer tensor) as an integer tensor, else
    a TypeError naming ``name``.

    Examples
    --------
    >>> as_int_tensor("label", [0, 1]).tolist()
    [0, 1]
    >>> as_int_tensor("label", "1")
    Traceback (most recent call last):
    ...
    TypeError: label must be an int, a sequence of int or an integer tensor, got '1' (str)
    """
    expected = "an int, a sequence of int or an integer tensor"
    if isinstance(value, (str, bytes, bool)) or value is None:
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{name} must be {expected}, got {value!r} ({type(value).__name__})"
        ) from None
    if t.dtype not in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        raise TypeError(f"{name} must be {expected}, got {value!r} (dtype {t.dtype})")
    return t


def check_length(model: VerifiableModel, T: object, name: str = "T") -> int:
    """A sequence length in ``[1, model.max_len]``."""
    return check_int(name, T, 1, model.max_len)


def renamed_keys_hook(
    rules: Sequence[tuple[str, str]],
) -> Callable[..., None]:
    """A ``load_state_dict`` pre-hook that renames old parameter names (regex, replacement)
    so that state dicts saved before a part was renamed still load."""
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]

    def hook(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = key[len(prefix) :]
            for pattern, repl in compiled:
                new = pattern.sub(repl, new)
            if prefix + new != key:
                state_dict[prefix + new] = state_dict.pop(key)

    return hook
