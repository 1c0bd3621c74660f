"""Hardness-aware deep metric learning (HDML, Zheng et al., CVPR 2019).

Instead of mining only hard negatives, HDML interpolates every negative towards its anchor by
an amount set by how well training goes (:func:`hardness_aware_negative`), maps the synthetic
embedding back to feature space with a label-preserving generator, and trains on real and
synthetic tuples weighted by how good the generator is (:class:`HDML`).

* synthesis: :func:`hardness_aware_negative`, :func:`hardness`
* base losses: :func:`triplet_loss`, :func:`npair_loss` (:func:`npair_negatives`), and
  :func:`from_pml` for pytorch-metric-learning losses (optional extra)
* the objective: :class:`HDML`, :class:`HDMLConfig` (:data:`PAPER_CONFIG`,
  :data:`DIGITS_CONFIG`), :class:`EmbeddingNet`, :class:`Generator`
* evaluation: :func:`recall_at_k`, :func:`nmi`, :func:`map_at_r`, :func:`retrieval_topk`
  (CUDA kernel ``kernels/retrieval_topk.cu``)
* the experiment: :func:`compare_on_digits` (zero-shot digits, HDML vs the base loss)
* the explorer's model: :func:`pca_2d`, :func:`synthesis_view`, :func:`smooth`

>>> import torch
>>> from toolkit.metric import hardness_aware_negative
>>> z, zp, zn = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 4.0]])
>>> hardness_aware_negative(z, zp, zn, j_avg=1e-6).norm().item()  # pulled to d+ = 1
1.0
"""

from .evaluation import map_at_r, nmi, recall_at_k, retrieval_topk
from .experiment import Comparison, RunResult, compare_on_digits, train_on_digits
from .explore import Projection, SynthesisView, pca_2d, smooth, synthesis_view
from .hdml import (
    DIGITS_CONFIG,
    HDML,
    PAPER_CONFIG,
    EmbeddingNet,
    Generator,
    HDMLConfig,
    RunningMean,
    sample_triplets,
)
from .losses import TupleLoss, from_pml, npair_loss, npair_negatives, triplet_loss
from .synthesis import PAPER_ALPHA, hardness, hardness_aware_negative

__all__ = [
    "DIGITS_CONFIG",
    "HDML",
    "PAPER_ALPHA",
    "PAPER_CONFIG",
    "Comparison",
    "EmbeddingNet",
    "Generator",
    "HDMLConfig",
    "Projection",
    "RunResult",
    "RunningMean",
    "SynthesisView",
    "TupleLoss",
    "compare_on_digits",
    "from_pml",
    "hardness",
    "hardness_aware_negative",
    "map_at_r",
    "nmi",
    "npair_loss",
    "npair_negatives",
    "pca_2d",
    "recall_at_k",
    "retrieval_topk",
    "sample_triplets",
    "smooth",
    "synthesis_view",
    "train_on_digits",
    "triplet_loss",
]
