"""Spiking networks trained by BPTT, after H2Learn (Liang et al., IEEE TCAD 2022).

* :func:`lif_multistep`, :class:`LIFNeuron`, :class:`IFNeuron`: multi-step neurons with
  surrogate gradients; fused CUDA kernels (``kernels/lif.cu``) on a GPU.
* :func:`lut_accumulate`, :func:`lut_counts`: binary-spike accumulation through lookup tables.
"""

from .lut import lut_accumulate, lut_counts
from .neuron import SURROGATES, IFNeuron, LIFNeuron, LIFParams, lif_multistep, surrogate_grad

__all__ = [
    "SURROGATES",
    "IFNeuron",
    "LIFNeuron",
    "LIFParams",
    "lif_multistep",
    "lut_accumulate",
    "lut_counts",
    "surrogate_grad",
]
