"""Attention sparsity: N:M structured pruning (DFSS) and prediction-based sparse attention (DSA).

>>> import torch, toolkit.attention as ta
>>> ta.nm_mask(torch.randn(2, 8), n=2, m=4).sum().item()
8
"""

from ..models._attention import attention_scores, masked_attention
from ._nm import nm_mask
from .dsa import dsa_attention, dsa_mask, dsa_projection, dsa_scores, quantize_rows
from .finetune import FinetuneResult, counting_task, finetune_demo, pattern_attention
from .metrics import (
    attention_metrics,
    kl_divergence,
    method_mask,
    output_error,
    retained_mass,
    topk_recall,
    tradeoff_curves,
)
from .patterns import keep_count, local_mask, strided_mask, topk_mask
from .sparse import nm_attention

__all__ = [
    "FinetuneResult",
    "attention_metrics",
    "attention_scores",
    "counting_task",
    "dsa_attention",
    "dsa_mask",
    "dsa_projection",
    "dsa_scores",
    "finetune_demo",
    "keep_count",
    "kl_divergence",
    "local_mask",
    "masked_attention",
    "method_mask",
    "nm_attention",
    "nm_mask",
    "output_error",
    "pattern_attention",
    "quantize_rows",
    "retained_mass",
    "strided_mask",
    "topk_mask",
    "topk_recall",
    "tradeoff_curves",
]
