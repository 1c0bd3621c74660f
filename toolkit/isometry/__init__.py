r"""Gradient-norm equality through free probability (Chen et al., TPAMI 2020).

For a block with input-output Jacobian :math:`J`, :math:`\phi(A) = \mathbb E[\mathrm{tr}A]/\dim`
(``dim`` = output width). *Block dynamical isometry* asks :math:`\phi(JJ^T)\approx 1`
and :math:`\phi((JJ^T)^2) - \phi(JJ^T)^2 \approx 0`. Blocks compose:
serial chains multiply S-transforms, parallel branches add (symmetrized)
R-transforms; activations enter through the law of :math:`f'(h)`,
:math:`h\sim N(0,q)`, with :math:`q` propagated mean-field style.

>>> import sympy as sp
>>> from toolkit.isometry import Linear, ReLU, Serial, repeat
>>> L = sp.Symbol("L", positive=True)
>>> repeat(Serial([Linear(256, 256, gain=sp.sqrt(2)), ReLU()]), L).moments()
Moments(m1=1, m2=2*L + 1, variance=2*L)

Modules: :mod:`.free` (transforms and convolutions), :mod:`.moments`,
:mod:`.blocks` (composition), :mod:`.linear`, :mod:`.activations`,
:mod:`.normalization` (components), :mod:`.profile`, :mod:`.spectra`
(eigenvalue densities), :mod:`.applications` (design rules); the measurement side:
:mod:`.empirical` (Hutchinson estimates on real ``torch.nn.Module``s), :mod:`.analyze`
(predicted vs measured per block), :mod:`.sampling` (Monte Carlo over random networks) and
:mod:`.designs` (a network design's analytic twin and closed forms).
"""

from .activations import (
    GELU,
    SELU_ALPHA,
    SELU_LAMBDA,
    Activation,
    Dropout,
    HardTanh,
    LeakyReLU,
    PReLU,
    ReLU,
    ScaledPReLU,
    SeLU,
    Sigmoid,
    Tanh,
    gaussian_expectation,
)
from .analyze import AnalysisRow, AnalysisTable, analyze, predict_block
from .applications import LeakySlope, leaky_relu_slope, selu_parameters
from .blocks import Block, Concat, Identity, Parallel, Repeat, Residual, Scale, Serial, repeat
from .designs import Formula, design_block, design_formula
from .empirical import EmpiricalMoments, empirical
from .free import (
    cumulants_to_moments,
    free_additive_convolution,
    free_multiplicative_convolution,
    marchenko_pastur_density,
    marchenko_pastur_moments,
    moments_from_s_transform,
    moments_to_cumulants,
    noncrossing_partitions,
    r_diagonal_sum,
    r_transform,
    s_transform,
    s_transform_coefficients,
)
from .linear import AvgPool, Conv2d, Linear, WeightNorm, WeightStandardization
from .moments import Moments
from .normalization import BatchNorm, SecondMomentNorm
from .profile import Profile, profile
from .sampling import (
    BlockMoments,
    NetworkDesign,
    ResidualBlock,
    build_network,
    sample_block_moments,
    sample_input,
    sample_spectrum,
)
from .spectra import spectral_density

__all__ = [
    "GELU",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "Activation",
    "AnalysisRow",
    "AnalysisTable",
    "AvgPool",
    "BatchNorm",
    "Block",
    "BlockMoments",
    "Concat",
    "Conv2d",
    "Dropout",
    "EmpiricalMoments",
    "Formula",
    "HardTanh",
    "Identity",
    "LeakyReLU",
    "LeakySlope",
    "Linear",
    "Moments",
    "NetworkDesign",
    "PReLU",
    "Parallel",
    "Profile",
    "ReLU",
    "Repeat",
    "Residual",
    "ResidualBlock",
    "Scale",
    "ScaledPReLU",
    "SeLU",
    "SecondMomentNorm",
    "Serial",
    "Sigmoid",
    "Tanh",
    "WeightNorm",
    "WeightStandardization",
    "analyze",
    "build_network",
    "cumulants_to_moments",
    "design_block",
    "design_formula",
    "empirical",
    "free_additive_convolution",
    "free_multiplicative_convolution",
    "gaussian_expectation",
    "leaky_relu_slope",
    "marchenko_pastur_density",
    "marchenko_pastur_moments",
    "moments_from_s_transform",
    "moments_to_cumulants",
    "noncrossing_partitions",
    "predict_block",
    "profile",
    "r_diagonal_sum",
    "r_transform",
    "repeat",
    "s_transform",
    "s_transform_coefficients",
    "sample_block_moments",
    "sample_input",
    "sample_spectrum",
    "selu_parameters",
    "spectral_density",
]
