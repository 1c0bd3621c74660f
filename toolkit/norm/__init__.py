"""Batch normalization with statistics from a few uncorrelated data (Chen et al., TNNLS 2020).

* :mod:`~toolkit.norm.functional` -- :func:`sampled_batch_norm` (reference and fused CUDA
  paths) and the samplers :func:`batch_sample`, :func:`feature_sample`, :func:`virtual_sample`.
* :mod:`~toolkit.norm.layers` -- drop-in ``nn.BatchNorm*d`` replacements: batch sampling,
  feature sampling, virtual dataset normalization, second-moment normalization, and a
  convolution with scaled weight standardization.
* :mod:`~toolkit.norm.analysis` -- estimation error against the number of data on real
  activations, the correlation effect, training accuracy of every variant, micro-batches.

>>> import torch
>>> from toolkit.norm import BatchSamplingBN2d
>>> bn = BatchSamplingBN2d(4, sample_ratio=0.25, seed=0)
>>> bn(torch.randn(16, 4, 6, 6)).shape
torch.Size([16, 4, 6, 6])
"""

from .functional import (
    Sample,
    batch_sample,
    feature_sample,
    full_sample,
    patch_sample,
    patch_size,
    sample_count,
    sampled_batch_norm,
    virtual_sample,
)
from .layers import (
    BatchSamplingBN1d,
    BatchSamplingBN2d,
    FeatureSamplingBN1d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
    VirtualDataset,
    VirtualDatasetNorm2d,
    WeightStandardizedConv2d,
    standardize_weight,
)

__all__ = [
    "BatchSamplingBN1d",
    "BatchSamplingBN2d",
    "FeatureSamplingBN1d",
    "FeatureSamplingBN2d",
    "Sample",
    "SecondMomentNorm2d",
    "VirtualDataset",
    "VirtualDatasetNorm2d",
    "WeightStandardizedConv2d",
    "batch_sample",
    "feature_sample",
    "full_sample",
    "patch_sample",
    "patch_size",
    "sample_count",
    "sampled_batch_norm",
    "standardize_weight",
    "virtual_sample",
]
