"""Attention sparsity: N:M structured pruning (DFSS) and prediction-based sparse attention (DSA).

The patterns are values (:mod:`toolkit.attention.patterns`): :class:`NM`, :class:`TopK`,
:class:`DSA`, :class:`Local`, :class:`Strided` and :class:`Dense`, each with its ``mask``,
``attention``, ``density`` and ``label``.  The functions below take them, or the strings
:func:`parse_pattern` reads (``"2:4"``, ``"dsa@0.25"``).

>>> import torch, toolkit.attention as ta
>>> ta.nm_mask(torch.randn(2, 8), n=2, m=4).sum().item()
8
>>> ta.NM(2, 4).mask(torch.randn(8, 16), torch.randn(8, 16)).float().mean().item()
0.5
"""

from ..models._attention import attention_scores, masked_attention
from ._nm import nm_mask
from .dsa import dsa_attention, dsa_mask, dsa_projection, dsa_scores, quantize_rows
from .finetune import FinetuneResult, counting_task, finetune_demo, pattern_attention
from .masks import keep_count, local_mask, strided_mask, topk_mask
from .metrics import (
    attention_metrics,
    kl_divergence,
    method_mask,
    output_error,
    retained_mass,
    sweep_patterns,
    topk_recall,
    tradeoff_curves,
)
from .patterns import (
    DSA,
    NM,
    PATTERN_KINDS,
    PATTERN_STYLES,
    Dense,
    Local,
    Pattern,
    PatternKind,
    PatternLike,
    PatternStyle,
    Strided,
    TopK,
    parse_pattern,
)
from .sparse import nm_attention
from .timing import AttentionTiming, time_attention

__all__ = [
    "DSA",
    "NM",
    "PATTERN_KINDS",
    "PATTERN_STYLES",
    "AttentionTiming",
    "Dense",
    "FinetuneResult",
    "Local",
    "Pattern",
    "PatternKind",
    "PatternLike",
    "PatternStyle",
    "Strided",
    "TopK",
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
    "parse_pattern",
    "pattern_attention",
    "quantize_rows",
    "retained_mass",
    "strided_mask",
    "sweep_patterns",
    "time_attention",
    "topk_mask",
    "topk_recall",
    "tradeoff_curves",
]
