r"""Normalization with statistics estimated from a sample of the data.

Batch normalization computes, per channel :math:`c`, the mean and variance over every datum of
the batch (all samples :math:`n` and positions :math:`h, w`).  Chen et al. (2020, *Effective and
Efficient Batch Normalization Using a Few Uncorrelated Data for Statistics Estimation*) estimate
them from a subset :math:`S` of :math:`m` data instead:

.. math:: \mu_c = \frac1m \sum_{i\in S} x_{ic}, \qquad
          \sigma_c^2 = \frac1m \sum_{i\in S} (x_{ic} - \mu_c)^2, \qquad
          y_{ic} = \gamma_c \frac{x_{ic} - \mu_c}{\sqrt{\sigma_c^2 + \epsilon}} + \beta_c

for *every* datum :math:`i`.  A :class:`Sample` describes :math:`S`: some rows of the batch and,
in each, one spatial window.  Batch sampling (BS) takes a few whole rows, feature sampling (FS)
one random patch in every row, virtual dataset normalization (VDN) the virtual rows plus a few
real ones.  With ``center=False`` the mean is not subtracted and :math:`\sigma^2_c` is the
second moment :math:`\frac1m\sum_S x^2` (second-moment normalization, SMN).

The gradient flows through the statistics into the sampled data only: with
:math:`r = (\sigma^2+\epsilon)^{-1/2}`, :math:`g = \gamma\, \partial L/\partial y`,

.. math:: \frac{\partial L}{\partial x_i} = r g_i - [i \in S]\,\frac{r}{m}
          \Big(\sum_j g_j + \hat x_i \sum_j g_j \hat x_j\Big),

summing over all data :math:`j` (the mean term drops without centring).  The reference path
gets this from autograd through the gather; the CUDA path (``kernels/bn_sampling.cu``) computes
it with one fused reduction and one elementwise pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import (
    MAX_SIZE,
    check_flag,
    check_int,
    check_positive,
    check_real,
    check_tensor,
    make_generator,
)
from .._dispatch import operation

__all__ = [
    "FLOAT_DTYPES",
    "Sample",
    "batch_sample",
    "feature_sample",
    "full_sample",
    "patch_sample",
    "patch_size",
    "sample_count",
    "sampled_batch_norm",
    "virtual_sample",
]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclass(frozen=True)
class Sample:
    """Which data estimate the statistics: ``rows`` of the batch and one window in each.

    Attributes
    ----------
    rows : torch.Tensor
        int64 ``[k]``, distinct batch indices in increasing order.
    starts : torch.Tensor
        int64 ``[k, 2]``, the top-left corner ``(h0, w0)`` of each row's window.
    patch : tuple of int
        The window's size ``(ph, pw)``; ``(H, W)`` for whole rows.
    shape : tuple of int
        ``(N, H, W)`` of the batch it was drawn for (1d inputs use ``H = 1``).
    """

    rows: torch.Tensor
    starts: torch.Tensor
    patch: tuple[int, int]
    shape: tuple[int, int, int]

    @property
    def count(self) -> int:
        """Number of data per channel, ``k * ph * pw``."""
        return int(self.rows.numel()) * self.patch[0] * self.patch[1]

    @property
    def whole_rows(self) -> bool:
        """True when every window is its whole feature map."""
        return self.patch == self.shape[1:]

    def to(self, device: torch.device | str) -> Sample:
        """The same sample with its index tensors on ``device``."""
        return Sample(self.rows.to(device), self.starts.to(device), self.patch, self.shape)


def _spatial(x: torch.Tensor) -> tuple[int, int, int]:
    """``(N, H, W)``: inputs ``[N, C]``, ``[N, C, L]`` or ``[N, C, H, W]`` seen as 4-d."""
    n = x.shape[0]
    if x.dim() == 2:
        return n, 1, 1
    if x.dim() == 3:
        return n, 1, x.shape[2]
    return n, x.shape[2], x.shape[3]


def _as4d(x: torch.Tensor) -> torch.Tensor:
    n, h, w = _spatial(x)
    return x.reshape(n, x.shape[1], h, w)


def _check_shape(shape: object, name: str = "shape") -> tuple[int, int, int]:
    """``(N, H, W)``: three positive ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise TypeError(f"{name} must be a tuple (N, H, W) of 3 ints, got {shape!r}")
    n, h, w = (check_int(f"{name}[{i}]", v, 1, MAX_SIZE) for i, v in enumerate(shape))
    return n, h, w


def _check_generator(generator: object) -> torch.Generator:
    """A sampler's generator is required: None would silently use torch's global one."""
    if generator is None:
        raise TypeError("generator must be a torch.Generator, got None")
    return make_generator(None, generator)  # type: ignore[arg-type]


def _check_sample(sample: Sample, shape: tuple[int, int, int]) -> None:
    """A hand-built :class:`Sample` must fit the batch: its indices are used unchecked by the
    gather and by the CUDA kernels."""
    if _check_shape(sample.shape, "sample.shape") != shape:
        raise ValueError(
            f"sample.shape: the sample was drawn for a batch of (N, H, W) = {sample.shape}, "
            f"got x of (N, H, W) = {shape}"
        )
    n, h, w = shape
    patch = sample.patch
    if not isinstance(patch, tuple) or len(patch) != 2:
        raise TypeError(f"sample.patch must be a tuple (ph, pw), got {patch!r}")
    check_int("sample.patch[0]", patch[0], 1, h)
    check_int("sample.patch[1]", patch[1], 1, w)
    rows = check_tensor("sample.rows", sample.rows, dtypes=(torch.int64,), ndim=1, nonempty=True)
    starts = check_tensor("sample.starts", sample.starts, dtypes=(torch.int64,), ndim=2)
    k = rows.numel()
    if starts.shape != (k, 2):
        raise ValueError(
            f"sample.starts must have shape ({k}, 2) (a corner per row), got {tuple(starts.shape)}"
        )
    if k and (int(rows[0]) < 0 or int(rows[-1]) >= n or bool((rows[1:] <= rows[:-1]).any())):
        raise ValueError(
            f"sample.rows must be distinct batch indices in [0, {n}) in increasing order, "
            f"got {rows.tolist()[:8]}"
        )
    if k:
        limit = torch.tensor([h - patch[0], w - patch[1]], device=starts.device)
        if bool((starts < 0).any()) or bool((starts > limit).any()):
            raise ValueError(
                f"sample.starts must place each {patch} window inside the {h}x{w} map, got "
                f"corners {starts.tolist()[:4]}"
            )


def sample_count(batch: int, ratio: float, name: str = "sample_ratio") -> int:
    """Rows that batch sampling keeps: ``floor(ratio * batch)``, at least 1 or a ValueError.

    >>> sample_count(128, 0.25)
    32
    >>> sample_count(2, 0.25)
    Traceback (most recent call last):
    ...
    ValueError: a batch of 2 is too small for sample_ratio=0.25: it keeps floor(0.25*2) = 0 \
samples; use a batch of at least 4 or a larger sample_ratio
    """
    batch = check_int("batch", batch, 1, MAX_SIZE)
    ratio = check_real(name, ratio, 0.0, 1.0, lo_open=True)
    k = math.floor(ratio * batch + 1e-9)
    if k < 1:
        inv = 1 / ratio  # inf for a subnormal ratio: no batch is large enough
        need = math.ceil(inv - 1e-9) if math.isfinite(inv) else "inf"
        raise ValueError(
            f"a batch of {batch} is too small for {name}={ratio:g}: it keeps "
            f"floor({ratio:g}*{batch}) = {k} samples; use a batch of at least {need} or a "
            f"larger {name}"
        )
    return k


def patch_size(h: int, w: int, ratio: float, name: str = "patch_ratio") -> tuple[int, int]:
    r"""Feature sampling's window for a ``h x w`` map covering about ``ratio`` of its area.

    Each side is scaled by :math:`\sqrt{\text{ratio}}` (by ``ratio`` for a 1-d map, ``h = 1``)
    and rounded, at least 1.

    >>> patch_size(8, 8, 0.25), patch_size(1, 100, 0.1)
    ((4, 4), (1, 10))
    """
    h = check_int("h", h, 1, MAX_SIZE)
    w = check_int("w", w, 1, MAX_SIZE)
    ratio = check_real(name, ratio, 0.0, 1.0, lo_open=True)
    if h == 1:
        return 1, max(1, min(w, round(w * ratio)))
    side = math.sqrt(ratio)
    return max(1, min(h, round(h * side))), max(1, min(w, round(w * side)))


def full_sample(shape: tuple[int, int, int]) -> Sample:
    """Every datum of a batch of ``(N, H, W)``: ordinary batch normalization."""
    n, h, w = shape = _check_shape(shape)
    return Sample(torch.arange(n), torch.zeros(n, 2, dtype=torch.long), (h, w), shape)


def batch_sample(
    shape: tuple[int, int, int], sample_ratio: float, generator: torch.Generator
) -> Sample:
    """Batch sampling: ``floor(sample_ratio * N)`` random whole rows.

    >>> s = batch_sample((8, 4, 4), 0.5, torch.Generator().manual_seed(0))
    >>> s.rows.numel(), s.count, s.whole_rows
    (4, 64, True)
    """
    n, h, w = shape = _check_shape(shape)
    k = sample_count(n, sample_ratio)
    rows = torch.randperm(n, generator=_check_generator(generator))[:k].sort().values
    return Sample(rows, torch.zeros(k, 2, dtype=torch.long), (h, w), shape)


def feature_sample(
    shape: tuple[int, int, int], patch_ratio: float, generator: torch.Generator
) -> Sample:
    """Feature sampling: one random ``patch_size`` window in every row, placed independently.

    When the patch tiles the map (its sides divide ``H`` and ``W``) the window is one tile
    drawn at random, so every position is sampled with the same probability and the
    estimates are unbiased even where activations depend on the position (image borders);
    otherwise the corner is uniform over every valid place.

    >>> s = feature_sample((8, 8, 8), 0.25, torch.Generator().manual_seed(0))
    >>> s.patch, s.count, sorted(set(s.starts.flatten().tolist()))
    ((4, 4), 128, [0, 4])
    """
    _, h, w = shape = _check_shape(shape)
    return patch_sample(shape, patch_size(h, w, patch_ratio), generator)


def _corners(n: int, size: int, patch: int, generator: torch.Generator) -> torch.Tensor:
    if size % patch == 0:
        return patch * torch.randint(0, size // patch, (n,), generator=generator)
    return torch.randint(0, size - patch + 1, (n,), generator=generator)


def patch_sample(
    shape: tuple[int, int, int], patch: tuple[int, int], generator: torch.Generator
) -> Sample:
    """One ``patch = (ph, pw)`` window in every row (see :func:`feature_sample`).

    >>> patch_sample((4, 6, 6), (1, 2), torch.Generator().manual_seed(0)).count
    8
    """
    n, h, w = shape = _check_shape(shape)
    if not isinstance(patch, (tuple, list)) or len(patch) != 2:
        raise TypeError(f"patch must be a tuple (ph, pw) of 2 ints, got {patch!r}")
    ph = check_int("patch[0]", patch[0], 1, h)
    pw = check_int("patch[1]", patch[1], 1, w)
    generator = _check_generator(generator)
    h0, w0 = _corners(n, h, ph, generator), _corners(n, w, pw, generator)
    return Sample(torch.arange(n), torch.stack([h0, w0], 1), (ph, pw), shape)


def virtual_sample(
    shape: tuple[int, int, int], num_virtual: int, real_ratio: float, generator: torch.Generator
) -> Sample:
    """Virtual dataset normalization: the last ``num_virtual`` rows (the virtual samples) plus
    ``floor(real_ratio * (N - num_virtual))`` random real rows (none for ``real_ratio=0``).

    >>> s = virtual_sample((10, 2, 2), 2, 0.25, torch.Generator().manual_seed(0))
    >>> s.rows.numel(), s.rows[-2:].tolist()
    (4, [8, 9])
    """
    n, h, w = shape = _check_shape(shape)
    num_virtual = check_int("num_virtual", num_virtual, 1, MAX_SIZE)
    real_ratio = check_real("real_ratio", real_ratio, 0.0, 1.0)
    generator = _check_generator(generator)
    if n <= num_virtual:
        raise ValueError(
            f"the input must hold the real batch followed by num_virtual={num_virtual} virtual "
            f"samples, got a batch of only {n}"
        )
    real = n - num_virtual
    k = math.floor(real_ratio * real + 1e-9)
    picked = torch.randperm(real, generator=generator)[:k].sort().values
    rows = torch.cat([picked, torch.arange(real, n)])
    return Sample(rows, torch.zeros(rows.numel(), 2, dtype=torch.long), (h, w), shape)


def _gather(x4: torch.Tensor, sample: Sample) -> torch.Tensor:
    """The sampled data of every channel, ``[C, count]`` (differentiable)."""
    rows = sample.rows.to(x4.device)
    if sample.whole_rows:
        picked = x4.index_select(0, rows)
        return picked.transpose(0, 1).reshape(x4.shape[1], -1)
    ph, pw = sample.patch
    starts = sample.starts.to(x4.device)
    hh = starts[:, :1] + torch.arange(ph, device=x4.device)  # [k, ph]
    ww = starts[:, 1:] + torch.arange(pw, device=x4.device)  # [k, pw]
    # Advanced indices around a slice put their broadcast shape first: [k, ph, pw, C].
    picked = x4[rows[:, None, None], :, hh[:, :, None], ww[:, None, :]]
    return picked.reshape(-1, x4.shape[1]).t()


@operation
def _sampled_norm_op(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    sample: Sample,
    eps: float,
    center: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x4 = _as4d(x)
    stat_dtype = torch.promote_types(x.dtype, torch.float32)
    data = _gather(x4, sample).to(stat_dtype)
    if center:
        mean = data.mean(1)
        var = (data - mean[:, None]).square().mean(1)
    else:
        mean = torch.zeros(data.shape[0], dtype=stat_dtype, device=x.device)
        var = data.square().mean(1)
    invstd = torch.rsqrt(var + eps)
    scale = invstd if weight is None else invstd * weight.to(stat_dtype)
    shift = -mean * scale if bias is None else bias.to(stat_dtype) - mean * scale
    y = x4.to(stat_dtype) * scale[None, :, None, None] + shift[None, :, None, None]
    return y.to(x.dtype).reshape(x.shape), mean.detach(), var.detach()


def _check_affine(name: str, value: torch.Tensor | None, channels: int, x: torch.Tensor) -> None:
    if value is None:
        return
    check_tensor(name, value, dtypes=FLOAT_DTYPES, ndim=1, device=x.device)
    if value.numel() != channels:
        raise ValueError(
            f"{name} must have one entry per channel ({channels}), got shape {tuple(value.shape)}"
        )


def sampled_batch_norm(
    x: torch.Tensor,
    sample: Sample | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    *,
    center: bool = True,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Normalize ``x`` with per-channel statistics of the sampled data only.

    Parameters
    ----------
    x : torch.Tensor
        ``[N, C]``, ``[N, C, L]`` or ``[N, C, H, W]``, floating point.
    sample : Sample, optional
        The data the statistics come from (default: all of them, i.e. batch norm).  It must
        have been drawn for this batch's ``(N, H, W)``.
    weight, bias : torch.Tensor, optional
        The affine :math:`\gamma, \beta`, ``[C]`` each.
    eps : float
        Added to the variance (second moment) before the square root, > 0.
    center : bool
        Subtract the mean (batch norm) or not (second-moment normalization).
    backend : str, optional
        ``"cpu"`` forces the reference path, ``"cuda"`` the fused kernels.

    Returns
    -------
    y : torch.Tensor
        Like ``x``.  Differentiable with respect to ``x``, ``weight`` and ``bias``.  NaN or
        Inf in ``x`` is not refused (a check would cost a device synchronisation per layer):
        it propagates, as in ``nn.BatchNorm2d``: to NaN in its whole channel when it sits
        in the sampled data, else to its own position only.
    mean, var : torch.Tensor
        ``[C]`` statistics of the sample (detached): the mean (zeros without centring) and the
        biased variance (the second moment without centring).

    Raises
    ------
    ValueError
        For a sample drawn for another shape (or whose rows, corners or window do not fit
        the batch), fewer than 2 data per channel with centring, ``weight``/``bias`` of the
        wrong length, or ``x`` on the meta device.

    Examples
    --------
    >>> x = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> y, mean, var = sampled_batch_norm(x)
    >>> ref = torch.nn.functional.batch_norm(x, None, None, training=True)
    >>> bool(torch.allclose(y, ref, atol=1e-5))
    True
    """
    check_tensor("x", x, dtypes=FLOAT_DTYPES, ndim=(2, 3, 4), nonempty=True)
    if x.device.type == "meta":
        raise ValueError("x must hold data, got a tensor on the meta device")
    shape = _spatial(x)
    sample = full_sample(shape) if sample is None else sample
    if not isinstance(sample, Sample):
        raise TypeError(f"sample must be a toolkit.norm.Sample, got {type(sample).__name__}")
    _check_sample(sample, shape)
    eps = check_positive("eps", eps)
    center = check_flag("center", center)
    _check_affine("weight", weight, x.shape[1], x)
    _check_affine("bias", bias, x.shape[1], x)
    if center and sample.count < 2:
        raise ValueError(
            f"the sample of x (shape {tuple(x.shape)}) holds {sample.count} datum per channel; "
            "a variance needs at least 2"
        )
    return _sampled_norm_op(x, weight, bias, sample, eps, center, backend=backend)


# The CUDA path registers itself on the operation above.
from . import _cuda  # noqa: E402,F401
