"""Attention sparsity: N:M structured pruning (DFSS) and prediction-based sparse attention (DSA).

>>> import torch, toolkit.attention as ta
>>> ta.nm_mask(torch.randn(2, 8), n=2, m=4).sum().item()
8
"""

from ._nm import nm_mask

__all__ = ["nm_mask"]
