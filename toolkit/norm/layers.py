r"""Drop-in replacements for ``nn.BatchNorm1d``/``nn.BatchNorm2d`` with sampled statistics.

* :class:`BatchSamplingBN2d` / :class:`BatchSamplingBN1d` (BS): the statistics of
  ``floor(sample_ratio * N)`` random samples of the batch.
* :class:`FeatureSamplingBN2d` / :class:`FeatureSamplingBN1d` (FS): the statistics of one random
  patch (about ``patch_ratio`` of the area) of every sample's feature map.
* :class:`VirtualDatasetNorm2d` (VDN): the statistics of a few virtual samples appended to the
  batch by :class:`VirtualDataset`, mixed with ``real_ratio`` of the real samples.
* :class:`SecondMomentNorm2d` (SMN): :math:`y = \gamma x / \sqrt{E[x^2] + \epsilon} + \beta`, no
  mean reduction (the :class:`toolkit.isometry.SecondMomentNorm` block).
* :class:`WeightStandardizedConv2d`: a convolution with scaled weight standardization (the
  :class:`toolkit.isometry.WeightStandardization` layer).

The sampling layers subclass the matching ``nn.BatchNorm*d``: same parameters, buffers,
``state_dict`` keys and eval-mode behaviour (running statistics), so a trained BatchNorm loads
into them and back.  In training mode the running statistics are updated exactly as BatchNorm
does, from the sample (unbiased variance over the ``m`` sampled data per channel).

On a CUDA input (with the CUDA backend in force) a training forward runs the fused kernels of
:mod:`toolkit.norm._cuda` with little host work per call: the sample is drawn on the device
from a hash of a seed (drawn once from the layer's generator) and a call counter, so it is
fixed by the seed but is a different draw from the CPU path's; :attr:`last_sample` reports it
either way, and the running statistics are updated inside the statistics kernel.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .._backend import resolve_device
from .._checks import (
    MAX_SIZE,
    check_choice,
    check_finite_tensor,
    check_flag,
    check_int,
    check_positive,
    check_real,
    check_tensor,
    make_generator,
)
from . import _cuda
from .functional import (
    FLOAT_DTYPES,
    Sample,
    _spatial,
    batch_sample,
    feature_sample,
    full_sample,
    patch_size,
    sample_count,
    sampled_batch_norm,
    virtual_sample,
)

__all__ = [
    "BatchSamplingBN1d",
    "BatchSamplingBN2d",
    "FeatureSamplingBN1d",
    "FeatureSamplingBN2d",
    "SecondMomentNorm2d",
    "VirtualDataset",
    "VirtualDatasetNorm2d",
    "WeightStandardizedConv2d",
    "standardize_weight",
]


def _device_dtype(device: Any, dtype: Any) -> tuple[Any, Any]:
    """A layer's ``device`` (None: torch's default) and floating ``dtype``, checked."""
    if device is not None:
        device = resolve_device(device)
    return device, check_choice("dtype", dtype, (None, *FLOAT_DTYPES))


def _check_input(x: Any, ndim: int | tuple[int, ...]) -> torch.Tensor:
    return check_tensor("input", x, dtypes=FLOAT_DTYPES, ndim=ndim, nonempty=True)


def _check_channels(x: torch.Tensor, num_features: int, layer: str) -> None:
    if x.shape[1] != num_features:
        raise ValueError(
            f"{layer} was built for num_features={num_features} channels, got an input with "
            f"{x.shape[1]} channels (shape {tuple(x.shape)})"
        )


# The device-side draws' geometry depends only on the batch's shape and the layer's ratios:
# computed (and checked: a batch too small for the sample raises here) once per combination.
# Each returns the Geometry, ``picks`` random rows of the first ``N - tail``, ``tail``
# trailing rows always taken, and the window corners' (range, multiple) per axis or None.
_DevicePlan = tuple[_cuda.Geometry, int, int, "tuple[int, int, int, int] | None"]


@functools.lru_cache(maxsize=1024)
def _batch_plan(shape: tuple[int, int, int], ratio: float) -> _DevicePlan:
    n, h, w = shape
    k = n if ratio == 1.0 else sample_count(n, ratio)
    return _cuda.Geometry(k, h, w, k * h * w, True), k, 0, None


@functools.lru_cache(maxsize=1024)
def _feature_plan(shape: tuple[int, int, int], ratio: float) -> _DevicePlan:
    n, h, w = shape
    ph, pw = patch_size(h, w, ratio)
    # as functional._corners: one tile at random when the patch tiles the axis, else any place
    hr, hm = (h // ph, ph) if h % ph == 0 else (h - ph + 1, 1)
    wr, wm = (w // pw, pw) if w % pw == 0 else (w - pw + 1, 1)
    geo = _cuda.Geometry(n, ph, pw, n * ph * pw, (ph, pw) == (h, w))
    return geo, n, 0, (hr, hm, wr, wm)


@functools.lru_cache(maxsize=1024)
def _virtual_plan(shape: tuple[int, int, int], virtual: int, ratio: float) -> _DevicePlan:
    n, h, w = shape
    if n <= virtual:
        raise ValueError(
            f"the input must hold the real batch followed by num_virtual={virtual} virtual "
            f"samples, got a batch of only {n}"
        )
    picks = math.floor(ratio * (n - virtual) + 1e-9)
    k = picks + virtual
    return _cuda.Geometry(k, h, w, k * h * w, True), picks, virtual, None


def _check_count(geo: _cuda.Geometry, x: torch.Tensor) -> None:
    if geo.m < 2:
        raise ValueError(
            f"the sample of x (shape {tuple(x.shape)}) holds {geo.m} datum per channel; "
            "a variance needs at least 2"
        )


class _DeviceSampling:
    """The fused-kernel training forward shared by the sampling layers and SMN.

    The sample is drawn on the input's device by ``bn_build_index`` from a hash of
    ``(seed, call)``: ``seed`` is drawn once from the layer's generator, ``call`` counts the
    draws (see :func:`toolkit.norm._cuda.draw_index`), so the layer's randomness stays fixed by
    its seed or generator and needs no host-to-device copy.  :attr:`last_sample` is built from
    the device index only when read."""

    generator: torch.Generator

    def _draw_seed(self) -> int:
        seed = self.__dict__.get("_seed")
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), generator=self.generator))
            self.__dict__["_seed"] = seed
        return seed

    def _device_generator(self, device: torch.device) -> torch.Generator:
        """For batches beyond the hashed draw's reach: a generator on ``device``."""
        gens = self.__dict__.setdefault("_device_generators", {})
        gen = gens.get(device)
        if gen is None:
            if self.generator.device == device:
                gen = self.generator
            else:
                gen = torch.Generator(device=device)
                gen.manual_seed(self._draw_seed())
            gens[device] = gen
        return gen

    def _device_index(
        self, x: torch.Tensor, plan: _DevicePlan, shape: tuple[int, int, int]
    ) -> torch.Tensor:
        """``shape``: ``_spatial(x)``."""
        geo, picks, tail, windows = plan
        n = shape[0]
        if geo.k == n and windows is None:  # every datum: a constant index, kept per shape
            fulls = self.__dict__.setdefault("_full_index", {})
            index = fulls.get((shape, x.device))
            if index is None:
                index = torch.zeros(3 * n, dtype=torch.int32, device=x.device)
                index[:n] = torch.arange(n, dtype=torch.int32, device=x.device)
                fulls[(shape, x.device)] = index
        else:
            seed = self._draw_seed()
            call = self.__dict__.get("_calls", 0)
            self.__dict__["_calls"] = call + 1
            gen = None
            if geo.k < n and n - tail > _cuda.HASH_ROWS:
                gen = self._device_generator(x.device)
            index = _cuda.draw_index(shape, geo.k, picks, tail, windows, seed, call, x.device, gen)
        self.__dict__["_last_draw"] = (index, geo, shape)
        self.__dict__["_last_sample"] = None
        return index

    @property
    def last_sample(self) -> Sample | None:
        """The sample of the last training forward (its tensors on the input's device)."""
        sample = self.__dict__.get("_last_sample")
        drawn = self.__dict__.get("_last_draw")
        if sample is None and drawn is not None:
            sample = _cuda.index_sample(*drawn)
            self.__dict__["_last_sample"] = sample
        return sample

    @last_sample.setter
    def last_sample(self, value: Sample | None) -> None:
        self.__dict__["_last_sample"] = value
        self.__dict__["_last_draw"] = None


def _running_args(
    x: torch.Tensor,
    mean: torch.Tensor | None,
    var: torch.Tensor,
    tracked: torch.Tensor | None,
    momentum: float | None,
    unbias: bool,
) -> _cuda.Running | None:
    """The finalize kernel's running-statistics arguments, or None where it cannot update them
    (buffers in another dtype or place than the statistics': torch ops do it then)."""
    sdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    for t in (mean, var):
        if t is not None and (t.dtype != sdt or t.device != x.device or not t.is_contiguous()):
            return None
    if tracked is not None and (tracked.dtype != torch.long or tracked.device != x.device):
        return None
    return mean, var, tracked, -1.0 if momentum is None else momentum, unbias


class _SampledStatistics(_DeviceSampling):
    """Shared forward of the sampling layers; a subclass draws the :class:`Sample` (reference
    path) and gives its device plan (fused kernels)."""

    num_features: int
    eps: float
    momentum: float | None
    training: bool
    track_running_stats: bool
    weight: Any
    bias: Any
    running_mean: Any
    running_var: Any
    num_batches_tracked: Any
    _ndims: tuple[int, ...] = (4,)

    def _draw(self, shape: tuple[int, int, int]) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    def _device_plan(self, shape: tuple[int, int, int]) -> _DevicePlan:  # pragma: no cover
        raise NotImplementedError

    def _init_layer(
        self,
        num_features: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        track_running_stats: bool,
        device: Any,
        dtype: Any,
        seed: int | None,
        generator: torch.Generator | None,
    ) -> None:
        if momentum is not None:
            momentum = check_real("momentum", momentum, 0.0, 1.0)
        device, dtype = _device_dtype(device, dtype)
        _BatchNorm.__init__(
            self,  # type: ignore[arg-type]
            check_int("num_features", num_features, 1, MAX_SIZE), check_positive("eps", eps),
            momentum, check_flag("affine", affine),
            check_flag("track_running_stats", track_running_stats), device, dtype,
        )  # fmt: skip
        self.generator = make_generator(seed, generator)
        self.last_sample = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        tracking = self.training and self.track_running_stats and self.running_mean is not None
        if (
            (self.training or self.running_mean is None)
            and isinstance(input, torch.Tensor)
            and input.dim() in self._ndims
            and input.shape[1] == self.num_features
            and input.numel() > 0
            and _cuda.layer_path(input)
        ):
            shape = _spatial(input)
            plan = self._device_plan(shape)
            if plan[0].m < 2:
                _check_count(plan[0], input)
            index = self._device_index(input, plan, shape)
            running = None
            if tracking:
                running = _running_args(
                    input, self.running_mean, self.running_var, self.num_batches_tracked,
                    self.momentum, True,
                )  # fmt: skip
            y, stats = _cuda.layer_forward(
                input, self.weight, self.bias, index, plan[0], self.eps, True, running
            )
            if tracking and running is None:
                self._update_running(stats[0], stats[1], plan[0].m)
            return y
        _check_input(input, (2, 3, 4))
        self._check_input_dim(input)  # type: ignore[attr-defined]
        _check_channels(input, self.num_features, type(self).__name__)
        if not self.training and self.running_mean is not None:
            return F.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                self.eps,
            )  # fmt: skip
        sample = self._draw(_spatial(input))
        self.last_sample = sample
        y, mean, var = sampled_batch_norm(input, sample, self.weight, self.bias, self.eps)
        if tracking:
            self._update_running(mean, var, sample.count)
        return y

    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, m: int) -> None:
        assert self.running_var is not None and self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        with torch.no_grad():
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            unbiased = var * (m / (m - 1)) if m > 1 else var
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


class BatchSamplingBN2d(_SampledStatistics, nn.BatchNorm2d):
    """Batch sampling: statistics from ``floor(sample_ratio * N)`` random samples of the batch.

    Parameters
    ----------
    num_features : int
        Channels ``C`` of the ``[N, C, H, W]`` input.
    sample_ratio : float
        Share of the batch whose feature maps estimate the statistics, in ``(0, 1]``;
        ``1.0`` is ``nn.BatchNorm2d``.
    eps, momentum, affine, track_running_stats, device, dtype
        As in ``nn.BatchNorm2d``.
    seed, generator
        The sampling's randomness (one of them, see :func:`toolkit._checks.make_generator`;
        neither draws fresh entropy).

    Raises
    ------
    ValueError
        For ``sample_ratio`` outside ``(0, 1]``; at a forward, for a batch too small to sample
        one datum or for a channel count other than ``num_features``.

    Examples
    --------
    >>> bn = BatchSamplingBN2d(3, sample_ratio=0.5, seed=0)
    >>> x = torch.randn(8, 3, 4, 4)
    >>> bn(x).shape, bn.last_sample.rows.numel()
    (torch.Size([8, 3, 4, 4]), 4)
    >>> sorted(bn.state_dict()) == sorted(torch.nn.BatchNorm2d(3).state_dict())
    True
    """

    def __init__(
        self,
        num_features: int,
        sample_ratio: float = 0.25,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.sample_ratio = check_real("sample_ratio", sample_ratio, 0.0, 1.0, lo_open=True)
        self._init_layer(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            seed, generator,
        )  # fmt: skip

    def _draw(self, shape: tuple[int, int, int]) -> Sample:
        if self.sample_ratio == 1.0:
            return full_sample(shape)
        return batch_sample(shape, self.sample_ratio, self.generator)

    def _device_plan(self, shape: tuple[int, int, int]) -> _DevicePlan:
        return _batch_plan(shape, self.sample_ratio)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sample_ratio={self.sample_ratio:g}"


class BatchSamplingBN1d(_SampledStatistics, nn.BatchNorm1d):
    """Batch sampling for ``[N, C]`` or ``[N, C, L]`` inputs; see :class:`BatchSamplingBN2d`.

    >>> BatchSamplingBN1d(5, sample_ratio=0.5, seed=0)(torch.randn(16, 5)).shape
    torch.Size([16, 5])
    """

    __init__ = BatchSamplingBN2d.__init__
    _draw = BatchSamplingBN2d._draw
    _device_plan = BatchSamplingBN2d._device_plan
    _ndims = (2, 3)
    extra_repr = BatchSamplingBN2d.extra_repr


class FeatureSamplingBN2d(_SampledStatistics, nn.BatchNorm2d):
    """Feature sampling: statistics from one random patch of every sample's feature map.

    The patch covers about ``patch_ratio`` of the ``H x W`` map (each side scaled by
    :math:`\\sqrt{\\text{patch\\_ratio}}`, see :func:`toolkit.norm.patch_size`) and sits at an
    independent random place in each sample, so the sampled data spread over the whole batch.

    Parameters
    ----------
    num_features : int
        Channels ``C``.
    patch_ratio : float
        The patch's share of each feature map, in ``(0, 1]``.
    eps, momentum, affine, track_running_stats, device, dtype, seed, generator
        As in :class:`BatchSamplingBN2d`.

    Examples
    --------
    >>> fs = FeatureSamplingBN2d(2, patch_ratio=0.25, seed=0)
    >>> _ = fs(torch.randn(4, 2, 8, 8))
    >>> fs.last_sample.patch, fs.last_sample.count
    ((4, 4), 64)
    """

    def __init__(
        self,
        num_features: int,
        patch_ratio: float = 0.25,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.patch_ratio = check_real("patch_ratio", patch_ratio, 0.0, 1.0, lo_open=True)
        self._init_layer(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            seed, generator,
        )  # fmt: skip

    def _draw(self, shape: tuple[int, int, int]) -> Sample:
        return feature_sample(shape, self.patch_ratio, self.generator)

    def _device_plan(self, shape: tuple[int, int, int]) -> _DevicePlan:
        return _feature_plan(shape, self.patch_ratio)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, patch_ratio={self.patch_ratio:g}"


class FeatureSamplingBN1d(_SampledStatistics, nn.BatchNorm1d):
    """Feature sampling for ``[N, C, L]`` inputs: a random window of about ``patch_ratio * L``
    positions in every sample; see :class:`FeatureSamplingBN2d`.

    >>> FeatureSamplingBN1d(3, patch_ratio=0.5, seed=0)(torch.randn(4, 3, 10)).shape
    torch.Size([4, 3, 10])
    """

    __init__ = FeatureSamplingBN2d.__init__
    _draw = FeatureSamplingBN2d._draw
    _device_plan = FeatureSamplingBN2d._device_plan
    _ndims = (3,)
    extra_repr = FeatureSamplingBN2d.extra_repr

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() != 3:
            raise ValueError(
                f"FeatureSamplingBN1d needs a [N, C, L] input (a length to sample a window "
                f"from), got shape {tuple(input.shape)}; use BatchSamplingBN1d for [N, C]"
            )


class VirtualDatasetNorm2d(_SampledStatistics, nn.BatchNorm2d):
    """Virtual dataset normalization: statistics of the virtual samples (the last
    ``num_virtual`` of the batch) plus ``floor(real_ratio * real)`` random real samples.

    Wrap the network in :class:`VirtualDataset`, which appends the virtual samples to every
    training batch and drops their outputs.  Eval mode uses the running statistics.

    Parameters
    ----------
    num_features : int
        Channels ``C``.
    num_virtual : int
        How many trailing samples of each batch are virtual, >= 1.
    real_ratio : float
        Share of the real samples mixed into the statistics, in ``[0, 1]`` (0: virtual only).
    eps, momentum, affine, track_running_stats, device, dtype, seed, generator
        As in :class:`BatchSamplingBN2d`.

    Examples
    --------
    >>> vdn = VirtualDatasetNorm2d(2, num_virtual=2, real_ratio=0.0, seed=0)
    >>> _ = vdn(torch.randn(6, 2, 3, 3))
    >>> vdn.last_sample.rows.tolist()
    [4, 5]
    """

    def __init__(
        self,
        num_features: int,
        num_virtual: int = 8,
        real_ratio: float = 0.0,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.num_virtual = check_int("num_virtual", num_virtual, 1, MAX_SIZE)
        self.real_ratio = check_real("real_ratio", real_ratio, 0.0, 1.0)
        self._init_layer(
            num_features, eps, momentum, affine, track_running_stats, device, dtype,
            seed, generator,
        )  # fmt: skip

    def _draw(self, shape: tuple[int, int, int]) -> Sample:
        return virtual_sample(shape, self.num_virtual, self.real_ratio, self.generator)

    def _device_plan(self, shape: tuple[int, int, int]) -> _DevicePlan:
        return _virtual_plan(shape, self.num_virtual, self.real_ratio)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_virtual={self.num_virtual}, "
            f"real_ratio={self.real_ratio:g}"
        )


class VirtualDataset(nn.Module):
    """Run ``model`` on ``cat([x, virtual])`` in training mode and return the real rows only.

    The virtual samples are a fixed buffer (saved in the ``state_dict``); every
    :class:`VirtualDatasetNorm2d` inside ``model`` takes its statistics from their activations
    (and a share of the real ones).  In eval mode the model runs on ``x`` alone.

    Parameters
    ----------
    model : nn.Module
        The network; its normalization layers should be :class:`VirtualDatasetNorm2d` with
        ``num_virtual = len(virtual)``.
    virtual : torch.Tensor
        ``[V, ...]`` virtual inputs, shaped like one batch of real inputs.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), VirtualDatasetNorm2d(4, 2, seed=0))
    >>> wrapped = VirtualDataset(net, torch.randn(2, 1, 6, 6))
    >>> wrapped(torch.randn(5, 1, 6, 6)).shape
    torch.Size([5, 4, 4, 4])
    """

    def __init__(self, model: nn.Module, virtual: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        check_tensor("virtual", virtual, dtypes=FLOAT_DTYPES, min_ndim=1, nonempty=True)
        check_finite_tensor("virtual", virtual)
        self.model = model
        self.virtual: torch.Tensor
        self.register_buffer("virtual", virtual.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        if not self.training:
            return self.model(x)
        if x.shape[1:] != self.virtual.shape[1:]:
            raise ValueError(
                f"x must be shaped like the virtual samples [*, {tuple(self.virtual.shape[1:])}]"
                f", got {tuple(x.shape)}"
            )
        out = self.model(torch.cat([x, self.virtual.to(x.dtype)]))
        return out[: x.shape[0]]


class SecondMomentNorm2d(_DeviceSampling, nn.Module):
    r"""Second-moment normalization :math:`y = \gamma x / \sqrt{E[x^2] + \epsilon} + \beta`.

    No mean is computed or subtracted, only the per-channel second moment over the batch (or
    over ``floor(sample_ratio * N)`` random samples).  Chen et al. (2020) propose it as a
    batch norm with one reduction instead of two; :class:`toolkit.isometry.SecondMomentNorm` is
    its block in the isometry engine.  The running estimate is ``running_second_moment``.

    Parameters
    ----------
    num_features : int
        Channels ``C``.
    eps, momentum, affine, track_running_stats, device, dtype
        As in ``nn.BatchNorm2d``.
    sample_ratio : float
        Share of the batch that estimates the second moment, in ``(0, 1]``.
    seed, generator
        The sampling's randomness (used only for ``sample_ratio < 1``).

    Examples
    --------
    >>> smn = SecondMomentNorm2d(3)
    >>> y = smn(torch.randn(8, 3, 4, 4) + 2)
    >>> round(float(y.square().mean()), 3)
    1.0
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        sample_ratio: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1, MAX_SIZE)
        self.eps = check_positive("eps", eps)
        device, dtype = _device_dtype(device, dtype)
        if momentum is not None:
            momentum = check_real("momentum", momentum, 0.0, 1.0)
        self.momentum = momentum
        self.affine = check_flag("affine", affine)
        self.track_running_stats = check_flag("track_running_stats", track_running_stats)
        self.sample_ratio = check_real("sample_ratio", sample_ratio, 0.0, 1.0, lo_open=True)
        self.generator = make_generator(seed, generator)
        self.last_sample = None
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(self.num_features, **kw)) if affine else None
        self.bias = nn.Parameter(torch.zeros(self.num_features, **kw)) if affine else None
        self.running_second_moment: torch.Tensor | None
        self.num_batches_tracked: torch.Tensor | None
        if self.track_running_stats:
            self.register_buffer("running_second_moment", torch.ones(self.num_features, **kw))
            self.register_buffer(
                "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
            )
        else:
            self.register_buffer("running_second_moment", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        tracking = self.training and self.running_second_moment is not None
        if (
            (self.training or self.running_second_moment is None)
            and isinstance(input, torch.Tensor)
            and input.dim() == 4
            and input.shape[1] == self.num_features
            and input.numel() > 0
            and _cuda.layer_path(input)
        ):
            shape = _spatial(input)
            plan = _batch_plan(shape, self.sample_ratio)
            index = self._device_index(input, plan, shape)
            running = None
            if tracking:
                assert self.running_second_moment is not None
                running = _running_args(
                    input, None, self.running_second_moment, self.num_batches_tracked,
                    self.momentum, False,
                )  # fmt: skip
            y, stats = _cuda.layer_forward(
                input, self.weight, self.bias, index, plan[0], self.eps, False, running
            )
            if tracking and running is None:
                self._update_running(stats[1])
            return y
        _check_input(input, 4)
        _check_channels(input, self.num_features, "SecondMomentNorm2d")
        if not self.training and self.running_second_moment is not None:
            scale = torch.rsqrt(self.running_second_moment + self.eps)
            if self.weight is not None:
                scale = scale * self.weight
            y = input * scale[:, None, None].to(input.dtype)
            return y if self.bias is None else y + self.bias[:, None, None].to(input.dtype)
        shape = _spatial(input)
        if self.sample_ratio == 1.0:
            sample = full_sample(shape)
        else:
            sample = batch_sample(shape, self.sample_ratio, self.generator)
        self.last_sample = sample
        y, _, second = sampled_batch_norm(
            input, sample, self.weight, self.bias, self.eps, center=False
        )
        if tracking:
            self._update_running(second)
        return y

    def _update_running(self, second: torch.Tensor) -> None:
        assert self.running_second_moment is not None and self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        with torch.no_grad():
            self.running_second_moment.lerp_(second.to(self.running_second_moment.dtype), factor)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, sample_ratio={self.sample_ratio:g}"
        )


def _int_or_pair(name: str, value: Any, minimum: int) -> int | tuple[int, int]:
    """A convolution's size argument: an int, or a pair of ints, each ``>= minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {name}={value!r}")
        return (
            check_int(f"{name}[0]", value[0], minimum, MAX_SIZE),
            check_int(f"{name}[1]", value[1], minimum, MAX_SIZE),
        )
    return check_int(name, value, minimum, MAX_SIZE)


def standardize_weight(
    weight: torch.Tensor, gain: float = 1.0, scaled: bool = True, eps: float = 1e-5
) -> torch.Tensor:
    r"""Scaled weight standardization of a ``[C_out, ...]`` weight, row by row.

    Each output row :math:`w` (fan-in :math:`n`) becomes
    :math:`g (w - \bar w) / \sqrt{\operatorname{var}(w) + \epsilon}`, times
    :math:`1/\sqrt{n}` when ``scaled``: its squared norm is then :math:`g^2` (up to
    :math:`\epsilon`), as in :class:`toolkit.isometry.WeightStandardization`.

    >>> w = standardize_weight(torch.randn(4, 3, 3, 3), gain=2.0)
    >>> w.flatten(1).square().sum(1).round(decimals=3).tolist()
    [4.0, 4.0, 4.0, 4.0]

    NaN or Inf in a row makes that row NaN.  A fan-in of 1 is refused: its one weight minus
    the row mean is always 0.
    """
    check_tensor("weight", weight, dtypes=FLOAT_DTYPES, min_ndim=2, nonempty=True)
    gain = check_positive("gain", gain)
    scaled = check_flag("scaled", scaled)
    eps = check_positive("eps", eps)
    if weight[0].numel() < 2:
        raise ValueError(
            f"weight must have a fan-in of at least 2 to standardize, got shape "
            f"{tuple(weight.shape)}"
        )
    flat = weight.flatten(1)
    centred = flat - flat.mean(1, keepdim=True)
    out = centred * torch.rsqrt(centred.square().mean(1, keepdim=True) + eps) * gain
    if scaled:
        out = out / flat.shape[1] ** 0.5
    return out.reshape(weight.shape)


class WeightStandardizedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is standardized at every forward (see
    :func:`standardize_weight`); the stored ``weight`` stays unconstrained.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        As in ``nn.Conv2d``.
    gain : float
        The row norm :math:`g` (``sqrt(2)`` before a ReLU keeps the second moment).
    scaled : bool
        Divide by :math:`\\sqrt{\\text{fan\\_in}}` (scaled weight standardization).
    ws_eps : float
        Added to each row's variance.

    Examples
    --------
    >>> conv = WeightStandardizedConv2d(3, 8, 3, padding=1, gain=2**0.5)
    >>> conv(torch.randn(2, 3, 5, 5)).shape
    torch.Size([2, 8, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros",
        device: Any = None,
        dtype: Any = None,
        *,
        gain: float = 1.0,
        scaled: bool = True,
        ws_eps: float = 1e-5,
    ) -> None:
        if not (isinstance(padding, str) and padding in ("same", "valid")):
            padding = _int_or_pair("padding", padding, 0)
        device, dtype = _device_dtype(device, dtype)
        super().__init__(
            check_int("in_channels", in_channels, 1, MAX_SIZE),
            check_int("out_channels", out_channels, 1, MAX_SIZE),
            _int_or_pair("kernel_size", kernel_size, 1), _int_or_pair("stride", stride, 1),
            padding, _int_or_pair("dilation", dilation, 1),
            check_int("groups", groups, 1, MAX_SIZE), check_flag("bias", bias), padding_mode,
            device, dtype,
        )  # fmt: skip
        self.gain = check_positive("gain", gain)
        self.scaled = check_flag("scaled", scaled)
        self.ws_eps = check_positive("ws_eps", ws_eps)

    def standardized_weight(self) -> torch.Tensor:
        """The weight the convolution uses."""
        return standardize_weight(self.weight, self.gain, self.scaled, self.ws_eps)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        _check_input(input, (3, 4))
        if input.shape[-3] != self.in_channels:
            raise ValueError(
                f"input must have in_channels={self.in_channels} channels, got shape "
                f"{tuple(input.shape)}"
            )
        if not isinstance(self.padding, str):
            for i, size in enumerate(input.shape[-2:]):
                reach = self.dilation[i] * (self.kernel_size[i] - 1) + 1
                if size + 2 * self.padding[i] < reach:
                    raise ValueError(
                        f"input of shape {tuple(input.shape)} is smaller than the kernel's "
                        f"reach {reach} (with padding {self.padding[i]}) along dimension {i}"
                    )
        return self._conv_forward(input, self.standardized_weight(), self.bias)
