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
"""

from .api import (
    BoundMemoryError,
    bounds,
    certified_radius,
    estimate_memory,
    margin_bounds,
    margin_matrix,
)
from .graph import Graph, build_graph
from .model import TransformerClassifier
from .soundness import SoundnessResult, check_soundness
from .specs import LpBall, Synonyms
from .task import Vocab, encode, load_default_model, make_dataset

__all__ = [
    "BoundMemoryError",
    "Graph",
    "LpBall",
    "SoundnessResult",
    "Synonyms",
    "TransformerClassifier",
    "Vocab",
    "bounds",
    "build_graph",
    "certified_radius",
    "check_soundness",
    "encode",
    "estimate_memory",
    "load_default_model",
    "make_dataset",
    "margin_bounds",
    "margin_matrix",
]
