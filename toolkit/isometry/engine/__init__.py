r"""The symbolic engine: Jacobian moments of composed blocks through free probability.

Truncated power series (:mod:`._series`, exact; :mod:`._numseries`, float), the free
transforms and convolutions (:mod:`.free`), :class:`~.moments.Moments`, block composition
(:mod:`.blocks`), the components (:mod:`.linear`, :mod:`.activations`, :mod:`.normalization`),
per-block profiles (:mod:`.profile`), eigenvalue densities (:mod:`.spectra`, with
:mod:`._subordination`) and design rules (:mod:`.applications`).  Nothing here touches a
``torch.nn.Module``; the measurement side is :mod:`toolkit.isometry.measure`.  The public
names are re-exported by :mod:`toolkit.isometry`.
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
from .applications import LeakySlope, leaky_relu_slope, selu_parameters
from .blocks import Block, Concat, Identity, Parallel, Repeat, Residual, Scale, Serial, repeat
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
from .spectra import spectral_density
from .stats import ForwardStats

__all__ = [
    "GELU",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "Activation",
    "AvgPool",
    "BatchNorm",
    "Block",
    "Concat",
    "Conv2d",
    "Dropout",
    "ForwardStats",
    "HardTanh",
    "Identity",
    "LeakyReLU",
    "LeakySlope",
    "Linear",
    "Moments",
    "PReLU",
    "Parallel",
    "Profile",
    "ReLU",
    "Repeat",
    "Residual",
    "Scale",
    "ScaledPReLU",
    "SeLU",
    "SecondMomentNorm",
    "Serial",
    "Sigmoid",
    "Tanh",
    "WeightNorm",
    "WeightStandardization",
    "cumulants_to_moments",
    "free_additive_convolution",
    "free_multiplicative_convolution",
    "gaussian_expectation",
    "leaky_relu_slope",
    "marchenko_pastur_density",
    "marchenko_pastur_moments",
    "moments_from_s_transform",
    "moments_to_cumulants",
    "noncrossing_partitions",
    "profile",
    "r_diagonal_sum",
    "r_transform",
    "repeat",
    "s_transform",
    "s_transform_coefficients",
    "selu_parameters",
    "spectral_density",
]
