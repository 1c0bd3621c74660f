"""Spiking networks trained by BPTT, after H2Learn (Liang et al., IEEE TCAD 2022).

* :func:`lif_multistep`, :class:`LIFNeuron`, :class:`IFNeuron`: multi-step neurons with
  surrogate gradients; fused CUDA kernels (``kernels/lif.cu``) on a GPU.
* :func:`spiking_mlp`, :func:`spiking_cnn`, :func:`rate_encode`, :func:`direct_encode`,
  :func:`train_bptt`, :func:`train_default`: networks and BPTT training on the digits.
* :func:`sparsity_profile`: forward spike density and backward dual sparsity per layer and step.
* :func:`lut_accumulate`, :func:`lut_counts`: binary-spike accumulation through lookup tables.
* :func:`h2learn_cost`: operations, memory traffic, time and energy against a dense baseline.
"""

from .cost import DEFAULT_TABLE, PHASES, CostBreakdown, h2learn_cost
from .lut import LUTCounts, lut_accumulate, lut_counts, lut_table
from .network import (
    DEFAULT_ACCURACY,
    SpikingNet,
    TrainResult,
    direct_encode,
    evaluate,
    rate_encode,
    spiking_cnn,
    spiking_mlp,
    train_bptt,
    train_default,
)
from .neuron import SURROGATES, IFNeuron, LIFNeuron, LIFParams, lif_multistep, surrogate_grad
from .profile import LayerInfo, SparsityProfile, sparsity_profile

__all__ = [
    "DEFAULT_ACCURACY",
    "DEFAULT_TABLE",
    "PHASES",
    "SURROGATES",
    "CostBreakdown",
    "IFNeuron",
    "LIFNeuron",
    "LIFParams",
    "LUTCounts",
    "LayerInfo",
    "SparsityProfile",
    "SpikingNet",
    "TrainResult",
    "direct_encode",
    "evaluate",
    "h2learn_cost",
    "lif_multistep",
    "lut_accumulate",
    "lut_counts",
    "lut_table",
    "rate_encode",
    "sparsity_profile",
    "spiking_cnn",
    "spiking_mlp",
    "surrogate_grad",
    "train_bptt",
    "train_default",
]
