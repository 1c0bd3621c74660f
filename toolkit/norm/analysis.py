r"""Why a few *uncorrelated* data suffice: estimation error, correlation, and accuracy.

Estimating a channel's mean from :math:`m` data that come in clusters of :math:`s` correlated
data (average pairwise correlation :math:`\rho` inside a cluster) has the variance

.. math:: \operatorname{Var}\hat\mu = \frac{\sigma^2}{m}\,\big(1 + (s-1)\rho\big)

(Kish's design effect): only :math:`m_\text{eff} = m / (1 + (s-1)\rho)` data count.  Batch
sampling takes whole feature maps (:math:`s = HW`, strongly correlated positions), feature
sampling takes a small patch from every sample (:math:`s` = the patch, spread over the whole
batch), which is why FS estimates better than BS from the same number of data
(Chen et al. 2020, Sec. 3).  This module measures that on the real activations of a small CNN
trained on the digits, and trains the CNN with every normalization variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._backend import quick_mode
from .._checks import (
    MAX_SIZE,
    check_choice,
    check_finite_tensor,
    check_int,
    check_real,
    check_seed,
    check_tensor,
)
from ..data import digits
from .functional import FLOAT_DTYPES, Sample, _gather, batch_sample, feature_sample, patch_sample
from .layers import (
    BatchSamplingBN2d,
    FeatureSamplingBN2d,
    SecondMomentNorm2d,
    VirtualDataset,
    VirtualDatasetNorm2d,
)

__all__ = [
    "ESTIMATORS",
    "NORM_KINDS",
    "EstimationCurves",
    "SmallCNN",
    "accuracy_table",
    "collect_activations",
    "correlation_profile",
    "estimation_curves",
    "make_norm",
    "microbatch_table",
    "sampling_error",
    "train_digits",
]

#: Normalization variants: key -> label.
NORM_KINDS = {
    "bn": "BatchNorm (full batch)",
    "bs": "batch sampling (BS)",
    "fs": "feature sampling (FS)",
    "vdn": "virtual dataset (VDN)",
    "smn": "second-moment (SMN)",
    "gn": "GroupNorm",
    "none": "no normalization",
}
ESTIMATORS = ("BS", "FS", "random")
#: The most random draws of :func:`estimation_curves` and :func:`sampling_error`.
MAX_TRIALS = 10_000


def _check_acts(acts: Any) -> torch.Tensor:
    """Activations ``[N, C, H, W]``: floating, finite, two samples or more, and no constant
    channel (the errors are relative to each channel's variance)."""
    check_tensor("acts", acts, dtypes=FLOAT_DTYPES, ndim=4, nonempty=True)
    check_finite_tensor("acts", acts)
    if acts.shape[0] < 2:
        raise ValueError(f"acts must hold at least 2 samples, got shape {tuple(acts.shape)}")
    flat = acts.transpose(0, 1).flatten(1).double()
    constant = (flat.amax(1) == flat.amin(1)).nonzero().flatten().tolist()
    if constant:
        raise ValueError(
            f"acts must not have a constant channel (variance 0: relative errors and "
            f"correlations are undefined), got constant channels {constant[:8]}"
        )
    return acts


def make_norm(kind: str, channels: int, ratio: float = 0.25, seed: int = 0) -> nn.Module:
    """A normalization layer of ``kind`` (a key of :data:`NORM_KINDS`) for ``channels``.

    ``ratio`` is BS's sample ratio and FS's patch ratio.  VDN layers expect 8 virtual samples
    (wrap the network in :class:`~toolkit.norm.VirtualDataset`, as :func:`train_digits` does).

    >>> make_norm("fs", 4, ratio=0.5)
    FeatureSamplingBN2d(4, eps=1e-05, momentum=0.1, affine=True, bias=True, \
track_running_stats=True, patch_ratio=0.5)
    """
    check_choice("kind", kind, tuple(NORM_KINDS))
    channels = check_int("channels", channels, 1, MAX_SIZE)
    ratio = check_real("ratio", ratio, 0.0, 1.0, lo_open=True)
    check_seed(seed)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "bs":
        return BatchSamplingBN2d(channels, sample_ratio=ratio, seed=seed)
    if kind == "fs":
        return FeatureSamplingBN2d(channels, patch_ratio=ratio, seed=seed)
    if kind == "vdn":
        return VirtualDatasetNorm2d(channels, num_virtual=_VIRTUAL, real_ratio=0.0, seed=seed)
    if kind == "smn":
        return SecondMomentNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(4, channels), channels)
    return nn.Identity()


_VIRTUAL = 8


class SmallCNN(nn.Module):
    """Three 3x3 convolutions (16, 32, 32 channels) with a normalization after each, for the
    8x8 digits; ``features`` holds the pre-normalization activations of the last forward.

    >>> SmallCNN("bs", seed=0)(torch.zeros(8, 1, 8, 8)).shape
    torch.Size([8, 10])
    """

    def __init__(self, norm: str = "bn", ratio: float = 0.25, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(check_seed(seed))
        widths = (16, 32, 32)
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, padding=1, bias=norm in ("none",))
            for i, o in zip((1, *widths[:-1]), widths)
        )
        self.norms = nn.ModuleList(
            make_norm(norm, w, ratio, seed=seed * 7 + i) for i, w in enumerate(widths)
        )
        self.head = nn.Linear(widths[-1], 10)
        self.features: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.features = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            h = conv(x)
            self.features.append(h.detach())
            x = torch.relu(norm(h))
            if i == 1:
                x = nn.functional.max_pool2d(x, 2)
        return self.head(x.mean((2, 3)))


@dataclass(frozen=True)
class TrainResult:
    """Accuracies after training, and the loss of every epoch."""

    train_accuracy: float
    test_accuracy: float
    losses: tuple[float, ...]
    model: nn.Module


def _virtual_inputs(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Virtual samples: Gaussian noise with the training images' per-pixel mean and std."""
    noise = torch.randn((_VIRTUAL, *x.shape[1:]), generator=gen)
    return x.mean(0) + x.std(0) * noise


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_digits(
    norm: str = "bn",
    *,
    ratio: float = 0.25,
    batch_size: int = 32,
    epochs: int = 8,
    seed: int = 0,
    lr: float = 3e-3,
    limit: int | None = None,
) -> TrainResult:
    """Train :class:`SmallCNN` with normalization ``norm`` on the digits (Adam).

    Parameters
    ----------
    norm : str
        A key of :data:`NORM_KINDS`.
    ratio : float
        BS's sample ratio, FS's patch ratio.
    batch_size, epochs, lr : int, int, float
        The training loop (the last partial batch of an epoch is dropped).
    seed : int
        Seeds the split, the initialization, the order and the sampling.
    limit : int, optional
        Use at most this many training images (quick runs).

    Returns
    -------
    TrainResult
        Train and test accuracy in eval mode (running statistics), losses per epoch.

    Examples
    --------
    >>> r = train_digits("fs", epochs=1, limit=128)
    >>> 0.0 <= r.test_accuracy <= 1.0
    True
    """
    check_choice("norm", norm, tuple(NORM_KINDS))
    batch_size = check_int("batch_size", batch_size, 1)
    epochs = check_int("epochs", epochs, 1)
    check_real("lr", lr, 0.0, lo_open=True)
    split = digits(seed=check_seed(seed), limit=limit)
    x, y = split.x_train, split.y_train
    if len(x) < batch_size:
        raise ValueError(f"batch_size={batch_size} exceeds the {len(x)} training images")
    gen = torch.Generator().manual_seed(seed)
    model: nn.Module = SmallCNN(norm, ratio, seed)
    if norm == "vdn":
        model = VirtualDataset(model, _virtual_inputs(x, gen))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total, steps = 0.0, 0
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(total / steps)
    return TrainResult(
        _accuracy(model, x, y), _accuracy(model, split.x_test, split.y_test), tuple(losses), model
    )


def collect_activations(
    model: SmallCNN | None = None, layer: int = 2, samples: int = 512, seed: int = 0
) -> torch.Tensor:
    """Pre-normalization activations ``[samples, C, H, W]`` of ``layer`` of a trained CNN.

    Without ``model``, a :class:`SmallCNN` with batch norm is trained briefly on the digits.

    >>> collect_activations(samples=16, layer=2).shape  # doctest: +SKIP
    torch.Size([16, 32, 4, 4])
    """
    layer = check_int("layer", layer, 0, 2)
    samples = check_int("samples", samples, 2)
    if model is None:
        trained = train_digits("bn", epochs=2 if quick_mode() else 4, seed=seed).model
        assert isinstance(trained, SmallCNN)
        model = trained
    x = digits(seed=seed, test_fraction=0.25).x_train
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:samples]
    model.eval()
    with torch.no_grad():
        model(x[idx])
    return model.features[layer].clone()


def _patch_for(area: int, h: int, w: int) -> tuple[int, int] | None:
    """The most square ``ph x pw = area`` window that fits in ``h x w``."""
    best = None
    for ph in range(1, h + 1):
        if area % ph == 0 and area // ph <= w:
            pw = area // ph
            if best is None or abs(ph - pw) < abs(best[0] - best[1]):
                best = (ph, pw)
    return best


def _draw(
    method: str, shape: tuple[int, int, int], count: int, gen: torch.Generator
) -> Sample | torch.Tensor:
    n, h, w = shape
    if method == "BS":
        k = count // (h * w)
        rows = torch.randperm(n, generator=gen)[:k].sort().values
        return Sample(rows, torch.zeros(k, 2, dtype=torch.long), (h, w), shape)
    if method == "FS":
        patch = _patch_for(count // n, h, w)
        assert patch is not None
        return patch_sample(shape, patch, gen)
    return torch.randperm(n * h * w, generator=gen)[:count]  # iid positions: the ideal


@dataclass(frozen=True)
class EstimationCurves:
    """Normalized estimation errors against the number of data ``counts``.

    ``mean_error[method]`` is the RMS over trials and channels of
    :math:`(\\hat\\mu - \\mu)/\\sigma`; ``var_error[method]`` of
    :math:`\\hat\\sigma^2/\\sigma^2 - 1` (``mu``, ``sigma`` from the whole
    batch).  ``predicted_bs`` is the design-effect prediction
    :math:`\\sqrt{(1 + (HW-1)\\rho)/m}` of BS's mean error from the measured intra-map
    correlation ``rho`` (channel average); ``iid`` is :math:`1/\\sqrt m`.
    """

    counts: np.ndarray
    mean_error: dict[str, np.ndarray]
    var_error: dict[str, np.ndarray]
    predicted_bs: np.ndarray
    iid: np.ndarray
    rho: float


def estimation_curves(
    acts: torch.Tensor,
    counts: Sequence[int] | None = None,
    trials: int = 64,
    seed: int = 0,
    methods: Sequence[str] = ESTIMATORS,
) -> EstimationCurves:
    """Estimation error of BS, FS and iid random sampling at equal data counts.

    Parameters
    ----------
    acts : torch.Tensor
        Activations ``[N, C, H, W]`` (e.g. from :func:`collect_activations`).
    counts : sequence of int, optional
        Data per channel; each must be a multiple of both ``H*W`` (BS takes whole maps) and
        ``N`` (FS takes one ``count/N`` patch per sample).  Default: every such count up to
        half the batch.
    trials : int
        Random draws per count.
    seed : int
        Seeds the draws.
    methods : sequence of str
        Some of ``"BS"``, ``"FS"``, ``"random"``.

    Returns
    -------
    EstimationCurves

    Examples
    --------
    >>> acts = torch.randn(64, 2, 4, 4)
    >>> c = estimation_curves(acts, trials=8)
    >>> c.counts.tolist()
    [64, 128, 256, 512]
    """
    _check_acts(acts)
    trials = check_int("trials", trials, 1, MAX_TRIALS)
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise TypeError(f"methods must be a non-empty sequence of {ESTIMATORS}, got {methods!r}")
    for name in methods:
        check_choice("methods", name, ESTIMATORS)
    n, c, h, w = acts.shape
    hw = h * w
    step = hw * n // math.gcd(hw, n)
    if counts is None:
        counts = [m for m in range(step, n * hw // 2 + 1, step) if _patch_for(m // n, h, w)]
        counts = [m for m in counts if m & (m - 1) == 0 or m == step] or [step]
    if isinstance(counts, str) or not isinstance(counts, Sequence) or not counts:
        raise TypeError(f"counts must be a non-empty sequence of ints, got {counts!r}")
    counts = [check_int(f"counts[{i}]", m, 1, n * hw) for i, m in enumerate(counts)]
    for m in counts:
        if m % hw or m % n or _patch_for(m // n, h, w) is None:
            raise ValueError(
                f"counts must each be a multiple of H*W={hw} and of N={n} whose quotient fits "
                f"in a patch of the {h}x{w} map, got {m}"
            )
    x = acts.double()
    mu = x.mean((0, 2, 3))
    var = x.var((0, 2, 3), unbiased=False)
    flat = x.transpose(0, 1).reshape(c, -1)
    gen = torch.Generator().manual_seed(check_seed(seed))
    mean_err = {m: np.zeros(len(counts)) for m in methods}
    var_err = {m: np.zeros(len(counts)) for m in methods}
    for j, m in enumerate(counts):
        for method in methods:
            se_mean = se_var = 0.0
            for _ in range(trials):
                drawn = _draw(method, (n, h, w), m, gen)
                data = _gather(x, drawn) if isinstance(drawn, Sample) else flat[:, drawn]
                est_mu, est_var = data.mean(1), data.var(1, unbiased=False)
                se_mean += float((((est_mu - mu) ** 2) / var).mean())
                se_var += float(((est_var / var - 1) ** 2).mean())
            mean_err[method][j] = math.sqrt(se_mean / trials)
            var_err[method][j] = math.sqrt(se_var / trials)
    rho = float(correlation_profile(acts)["rho_map"].mean())
    cnt = np.asarray(counts, dtype=float)
    return EstimationCurves(
        counts=np.asarray(counts),
        mean_error=mean_err,
        var_error=var_err,
        predicted_bs=np.sqrt((1 + (hw - 1) * rho) / cnt),
        iid=1 / np.sqrt(cnt),
        rho=rho,
    )


def sampling_error(
    acts: torch.Tensor,
    method: str,
    ratio: float,
    batch_size: int | None = None,
    trials: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Error of one layer's statistics when ``method`` samples ``ratio`` of a batch.

    Each trial draws a batch of ``batch_size`` samples from ``acts``, takes its full-batch
    mean and variance as the target (what batch norm would use), and estimates them with
    ``"BS"`` (:func:`~toolkit.norm.batch_sample` with ``sample_ratio=ratio``), ``"FS"``
    (:func:`~toolkit.norm.feature_sample` with ``patch_ratio=ratio``) or ``"random"``
    (``ratio`` of the batch's data at independent random places).

    Returns
    -------
    dict
        ``count`` (data per channel), ``mean_error`` and ``var_error`` (RMS over trials and
        channels of :math:`(\\hat\\mu-\\mu)/\\sigma` and :math:`\\hat\\sigma^2/\\sigma^2-1`).

    Examples
    --------
    >>> e = sampling_error(torch.randn(64, 3, 4, 4), "BS", 0.25, batch_size=32, trials=4)
    >>> e["count"]
    128
    """
    _check_acts(acts)
    check_choice("method", method, ESTIMATORS)
    ratio = check_real("ratio", ratio, 0.0, 1.0, lo_open=True)
    n_all, _, h, w = acts.shape
    n = n_all if batch_size is None else check_int("batch_size", batch_size, 1, n_all)
    trials = check_int("trials", trials, 1, MAX_TRIALS)
    gen = torch.Generator().manual_seed(check_seed(seed))
    x = acts.double()
    se_mean = se_var = 0.0
    count = 0
    for _ in range(trials):
        batch = x[torch.randperm(n_all, generator=gen)[:n]]
        mu, var = batch.mean((0, 2, 3)), batch.var((0, 2, 3), unbiased=False)
        if method == "random":
            count = max(1, round(ratio * n * h * w))
            pos = torch.randperm(n * h * w, generator=gen)[:count]
            data = batch.transpose(0, 1).reshape(batch.shape[1], -1)[:, pos]
        else:
            draw = batch_sample if method == "BS" else feature_sample
            sample = draw((n, h, w), ratio, gen)
            count = sample.count
            data = _gather(batch, sample)
        est_mu, est_var = data.mean(1), data.var(1, unbiased=False)
        se_mean += float((((est_mu - mu) ** 2) / var).mean())
        se_var += float(((est_var / var - 1) ** 2).mean())
    return {
        "count": count,
        "mean_error": math.sqrt(se_mean / trials),
        "var_error": math.sqrt(se_var / trials),
    }


def correlation_profile(acts: torch.Tensor, max_lag: int | None = None) -> dict[str, np.ndarray]:
    """How correlated the data of one channel are, per channel.

    Returns ``rho_map`` (the intra-map correlation: average correlation of two different
    positions of the same sample's map, from the variance of the map means),
    ``rho_lag`` (``[C, max_lag]``: the correlation of horizontally adjacent data at lags
    1..max_lag, within a map), and ``rho_across`` (the correlation of the same position in two
    different samples, which is ~0 for independent samples).

    >>> prof = correlation_profile(torch.randn(256, 3, 4, 4))
    >>> bool(abs(prof["rho_map"]).max() < 0.05)
    True
    """
    _check_acts(acts)
    n, _, h, w = acts.shape
    x = acts.double()
    centred = x - x.mean((0, 2, 3), keepdim=True)
    var = centred.square().mean((0, 2, 3))
    hw = h * w
    map_means = centred.mean((2, 3))
    # Var(map mean) = var/hw * (1 + (hw - 1) rho)  =>  rho
    rho_map = (map_means.square().mean(0) * hw / var - 1) / max(hw - 1, 1)
    max_lag = max(1, w - 1) if max_lag is None else check_int("max_lag", max_lag, 1, w - 1)
    rho_lag = np.stack(
        [
            ((centred[..., d:] * centred[..., :-d]).mean((0, 2, 3)) / var).numpy()
            for d in range(1, max_lag + 1)
        ],
        1,
    )
    half = n // 2
    across = (centred[:half] * centred[half : 2 * half]).mean((0, 2, 3)) / var
    return {"rho_map": rho_map.numpy(), "rho_lag": rho_lag, "rho_across": across.numpy()}


def accuracy_table(
    kinds: Sequence[str] = ("bn", "bs", "fs", "vdn", "smn"),
    seeds: Sequence[int] = (0, 1, 2),
    *,
    ratio: float = 0.25,
    batch_size: int = 32,
    epochs: int | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Test accuracy of every variant over seeds: ``{kind: array [len(seeds)]}``.

    ``epochs`` defaults to 8 (3 in quick mode).

    >>> t = accuracy_table(("bn",), (0,), epochs=1, limit=64, progress=False)
    >>> t["bn"].shape
    (1,)
    """
    epochs = (3 if quick_mode() else 8) if epochs is None else epochs
    runs = [(k, s) for k in kinds for s in seeds]
    out: dict[str, list[float]] = {k: [] for k in kinds}
    for kind, seed in tqdm(runs, desc="training", disable=not progress):
        r = train_digits(
            kind, ratio=ratio, batch_size=batch_size, epochs=epochs, seed=seed, limit=limit
        )
        out[kind].append(r.test_accuracy)
    return {k: np.asarray(v) for k, v in out.items()}


def microbatch_table(
    batch_sizes: Sequence[int] = (1, 2, 3, 4),
    kinds: Sequence[str] = ("bn", "gn", "vdn", "fs"),
    seeds: Sequence[int] = (0,),
    *,
    epochs: int | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Test accuracy with micro-batches: ``{kind: array [len(batch_sizes), len(seeds)]}``.

    Batch norm estimates from ``b * H * W`` correlated data, GroupNorm needs no batch, VDN
    takes its statistics from virtual samples, FS uses a patch (``ratio=0.5``) of each map.
    ``epochs`` defaults to 2 (1 in quick mode), ``limit`` to 600 training images (300).

    >>> t = microbatch_table((2,), ("gn",), epochs=1, limit=32, progress=False)
    >>> t["gn"].shape
    (1, 1)
    """
    epochs = (1 if quick_mode() else 2) if epochs is None else epochs
    limit = (300 if quick_mode() else 600) if limit is None else limit
    runs = [(k, b, s) for k in kinds for b in batch_sizes for s in seeds]
    out = {k: np.zeros((len(batch_sizes), len(seeds))) for k in kinds}
    for kind, b, seed in tqdm(runs, desc="micro-batches", disable=not progress):
        r = train_digits(
            kind, ratio=0.5, batch_size=b, epochs=epochs, seed=seed, limit=limit, lr=1e-3
        )
        out[kind][list(batch_sizes).index(b), list(seeds).index(seed)] = r.test_accuracy
    return out
