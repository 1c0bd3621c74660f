"""Spiking networks built from LIF layers: encoders, MLP and CNN builders, readouts, BPTT.

A network takes static inputs ``[B, ...]``, encodes them over ``T`` steps (``[T, B, ...]``),
runs synapses (``Linear``/``Conv2d`` applied to every step at once) followed by LIF neurons,
and reads out class scores from the last synapse's output averaged over time (a non-spiking
readout) or from the output neurons' firing rates.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._backend import resolve_device
from .._checks import (
    MAX_SIZE,
    check_choice,
    check_finite_tensor,
    check_flag,
    check_int,
    check_positive,
    check_seed,
    check_tensor,
    make_generator,
)
from .neuron import LIFNeuron

__all__ = [
    "DEFAULT_ACCURACY",
    "ENCODERS",
    "READOUTS",
    "SpikingNet",
    "TimeDistributed",
    "TrainResult",
    "direct_encode",
    "evaluate",
    "rate_encode",
    "spiking_cnn",
    "spiking_mlp",
    "train_bptt",
    "train_default",
]

ENCODERS = ("rate", "direct")
READOUTS = ("mean_current", "spike_rate")
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_inputs(name: str, x: Any) -> torch.Tensor:
    """Static inputs ``[B, ...]``: floating, non-empty and finite."""
    check_tensor(name, x, dtypes=_FLOATS, min_ndim=1, nonempty=True)
    return check_finite_tensor(name, x)


def _check_labels(name: str, y: Any, x_name: str, x: torch.Tensor, classes: int) -> torch.Tensor:
    """Class labels ``[B]``: int64, one per input, in ``[0, classes)``."""
    check_tensor(name, y, dtypes=(torch.int64,), ndim=1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must hold one label per row of {x_name} ({x.shape[0]}), got {y.shape[0]}"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(
            f"{name} must lie in [0, {classes}) (the network's classes), got labels from "
            f"{int(y.min())} to {int(y.max())}"
        )
    return y


def _check_model(model: Any) -> SpikingNet:
    if not isinstance(model, SpikingNet):
        raise TypeError(f"model must be a SpikingNet, got {type(model).__name__}")
    return model


def rate_encode(
    x: torch.Tensor, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rate (Bernoulli/Poisson) coding: spike with probability ``clamp(x, 0, 1)`` at each step.

    Returns ``[steps, *x.shape]`` spikes in ``x``'s dtype.  Drawn on the CPU with
    ``generator`` (then moved to ``x``'s device) so that a seed gives the same spikes anywhere;
    None uses torch's global generator.  ``x`` must be floating and finite (a NaN has no
    spike probability).

    Examples
    --------
    >>> s = rate_encode(torch.full((1000,), 0.3), 4, torch.Generator().manual_seed(0))
    >>> s.shape, round(float(s.mean()), 1)
    (torch.Size([4, 1000]), 0.3)
    """
    check_tensor("x", x, dtypes=_FLOATS)
    check_finite_tensor("x", x.detach())
    steps = check_int("steps", steps, 1, MAX_SIZE)
    if generator is not None:
        generator = make_generator(None, generator, cpu=True)
    p = x.detach().clamp(0, 1).cpu().float().expand(steps, *x.shape)
    return torch.bernoulli(p, generator=generator).to(device=x.device, dtype=x.dtype)


def direct_encode(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Direct coding: the analogue input repeated at every step, ``[steps, *x.shape]``.

    >>> direct_encode(torch.tensor([0.5]), 3).flatten().tolist()
    [0.5, 0.5, 0.5]
    """
    check_tensor("x", x)
    steps = check_int("steps", steps, 1, MAX_SIZE)
    return x.unsqueeze(0).expand(steps, *x.shape)


class TimeDistributed(nn.Module):
    """Apply ``module`` to every time step at once: ``[T, B, ...] -> [T, B, ...]``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[:2]
        y = self.module(x.reshape(t * b, *x.shape[2:]))
        return y.reshape(t, b, *y.shape[1:])


class SpikingNet(nn.Module):
    """A spiking network over ``steps`` time steps (see the module docstring).

    Parameters
    ----------
    body : nn.Sequential
        ``TimeDistributed`` synapses and :class:`LIFNeuron` layers, ending with the readout
        synapse (and an output LIF layer when ``readout="spike_rate"``).
    steps : int
        Time steps ``T``.
    encoder : {"rate", "direct"}
    readout : {"mean_current", "spike_rate"}
    seed : int
        Seeds the rate encoder's spikes.
    """

    def __init__(
        self,
        body: nn.Sequential,
        steps: int = 8,
        encoder: str = "rate",
        readout: str = "mean_current",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(body, nn.Sequential):
            raise TypeError(f"body must be a torch.nn.Sequential, got {type(body).__name__}")
        self.body = body
        self.steps = check_int("steps", steps, 1, MAX_SIZE)
        self.encoder = check_choice("encoder", encoder, ENCODERS)
        self.readout = check_choice("readout", readout, READOUTS)
        self.generator = torch.Generator().manual_seed(check_seed(seed))
        #: The shape of one input sample the builders made the network for (None: unchecked);
        #: an MLP flattens its input, so only the number of entries must match there.
        self.input_shape: tuple[int, ...] | None = None

    def _check_input(self, x: Any) -> None:
        check_tensor("x", x, dtypes=_FLOATS, min_ndim=2, nonempty=True)
        want = self.input_shape
        if want is None:
            return
        if len(want) == 1 and x[0].numel() != want[0]:
            raise ValueError(
                f"x must hold {want[0]} entries per sample (the network's input size), got "
                f"shape {tuple(x.shape)}"
            )
        if len(want) > 1 and tuple(x.shape[1:]) != want:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, want))}], got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder == "rate":
            return rate_encode(x, self.steps, self.generator)
        return direct_encode(x, self.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``[B, classes]`` for static inputs ``[B, ...]``."""
        self._check_input(x)
        out = self.body(self.encode(x))
        scores = out.mean(0)
        # Firing rates lie in [0, 1]; scale them so that softmax can be confident.
        return scores * 10.0 if self.readout == "spike_rate" else scores

    def neurons(self) -> list[LIFNeuron]:
        return [m for m in self.body if isinstance(m, LIFNeuron)]

    def synapses(self) -> list[nn.Module]:
        return [m.module for m in self.body if isinstance(m, TimeDistributed)]

    def classes(self) -> int | None:
        """Output classes: the last synapse's ``out_features`` (None if it is not Linear)."""
        layers = [m for m in self.synapses() if isinstance(m, (nn.Linear, nn.Conv2d))]
        return layers[-1].out_features if layers and isinstance(layers[-1], nn.Linear) else None


def _neuron(kwargs: dict[str, Any]) -> LIFNeuron:
    return LIFNeuron(**kwargs)


def spiking_mlp(
    sizes: Sequence[int] = (64, 128, 10),
    steps: int = 8,
    encoder: str = "rate",
    readout: str = "mean_current",
    seed: int = 0,
    **neuron: Any,
) -> SpikingNet:
    """A spiking MLP: ``Linear -> LIF`` per hidden layer, then the readout ``Linear``.

    ``neuron`` keyword arguments go to every :class:`LIFNeuron` (``tau``, ``surrogate``, ...).
    Inputs are flattened.

    Examples
    --------
    >>> net = spiking_mlp((64, 32, 10), steps=4, surrogate="triangle")
    >>> net(torch.rand(5, 1, 8, 8)).shape
    torch.Size([5, 10])
    """
    if isinstance(sizes, str) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of ints, got {sizes!r}")
    sizes = [check_int(f"sizes[{i}]", s, 1, MAX_SIZE) for i, s in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least an input and an output size, got {sizes}")
    check_choice("readout", readout, READOUTS)
    torch.manual_seed(check_seed(seed))  # the layers' initialization
    layers: list[nn.Module] = [TimeDistributed(nn.Flatten())]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(TimeDistributed(nn.Linear(a, b)))
        if i < len(sizes) - 2 or readout == "spike_rate":
            layers.append(_neuron(neuron))
    net = SpikingNet(nn.Sequential(*layers), steps, encoder, readout, seed)
    net.input_shape = (sizes[0],)
    return net


def spiking_cnn(
    channels: Sequence[int] = (16, 32),
    image_size: int = 8,
    in_channels: int = 1,
    classes: int = 10,
    steps: int = 8,
    encoder: str = "rate",
    readout: str = "mean_current",
    seed: int = 0,
    **neuron: Any,
) -> SpikingNet:
    """A spiking CNN: per stage ``Conv3x3 -> BatchNorm -> LIF -> AvgPool2``, then the readout
    ``Linear``.

    Examples
    --------
    >>> spiking_cnn((4, 8), steps=2)(torch.rand(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """
    if isinstance(channels, str) or not isinstance(channels, Sequence):
        raise TypeError(f"channels must be a sequence of ints, got {channels!r}")
    size = check_int("image_size", image_size, 1, MAX_SIZE)
    prev = check_int("in_channels", in_channels, 1, MAX_SIZE)
    classes = check_int("classes", classes, 1, MAX_SIZE)
    check_choice("readout", readout, READOUTS)
    torch.manual_seed(check_seed(seed))
    layers: list[nn.Module] = []
    for i, c in enumerate(channels):
        c = check_int(f"channels[{i}]", c, 1, MAX_SIZE)
        layers += [
            TimeDistributed(nn.Conv2d(prev, c, 3, padding=1, bias=False)),
            # Batch norm puts the currents on the threshold's scale, so that neurons fire from
            # the first step of training (at inference it folds into the convolution).
            TimeDistributed(nn.BatchNorm2d(c)),
            _neuron(neuron),
            TimeDistributed(nn.AvgPool2d(2)),
        ]
        prev, size = c, size // 2
        if size < 1:
            raise ValueError(f"image_size={image_size} is too small for {len(channels)} stages")
    layers += [
        TimeDistributed(nn.Flatten()),
        TimeDistributed(nn.Linear(prev * size * size, classes)),
    ]
    if readout == "spike_rate":
        layers.append(_neuron(neuron))
    net = SpikingNet(nn.Sequential(*layers), steps, encoder, readout, seed)
    net.input_shape = (in_channels, image_size, image_size)
    return net


@dataclass
class TrainResult:
    """Per-epoch history of :func:`train_bptt`."""

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_test_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")


@torch.no_grad()
def evaluate(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Accuracy of ``model`` on ``(x, y)`` (``x`` non-empty, ``y`` int64 labels)."""
    _check_model(model)
    _check_inputs("x", x)
    _check_labels("y", y, "x", x, model.classes() or MAX_SIZE)
    batch_size = check_int("batch_size", batch_size, 1, MAX_SIZE)
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was)
    return correct / len(x)


def train_bptt(
    model: SpikingNet,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    epochs: int = 10,
    lr: float = 2e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[int, TrainResult], None] | None = None,
) -> TrainResult:
    """Train by backpropagation through time (Adam on the cross-entropy of the readout).

    The gradient flows through the unrolled time steps and through every spike by the
    neurons' surrogate derivative.  Data is moved to the model's device.

    ``x_train`` and ``x_test`` must be non-empty, floating and finite; the labels int64, one
    per input, within the network's classes; ``x_test`` and ``y_test`` come together.

    Returns
    -------
    TrainResult
        Loss, train accuracy (on the batches seen) and test accuracy per epoch.
    """
    _check_model(model)
    classes = model.classes() or MAX_SIZE
    _check_inputs("x_train", x_train)
    _check_labels("y_train", y_train, "x_train", x_train, classes)
    if (x_test is None) != (y_test is None):
        raise ValueError(
            "x_test and y_test come together: got "
            f"x_test={'None' if x_test is None else 'a tensor'} and "
            f"y_test={'None' if y_test is None else 'a tensor'}"
        )
    if x_test is not None:
        _check_inputs("x_test", x_test)
        _check_labels("y_test", y_test, "x_test", x_test, classes)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1, MAX_SIZE)
    lr = check_positive("lr", lr)
    progress = check_flag("progress", progress)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    device = next(model.parameters()).device
    x_train, y_train = x_train.to(device), y_train.to(device)
    gen = torch.Generator().manual_seed(check_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = TrainResult()
    start = time.perf_counter()
    try:
        from tqdm.auto import tqdm

        bar = tqdm(range(epochs), desc="BPTT", disable=not progress, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = range(epochs)
    model.train()
    for epoch in bar:
        order = torch.randperm(len(x_train), generator=gen).to(device)
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            scores = model(x_train[idx])
            loss = F.cross_entropy(scores, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((scores.argmax(1) == y_train[idx]).sum())
            seen += len(idx)
        result.loss.append(total / seen)
        result.train_accuracy.append(correct / seen)
        if x_test is not None and y_test is not None:
            result.test_accuracy.append(evaluate(model, x_test.to(device), y_test.to(device)))
        if callback is not None:
            callback(epoch, result)
    result.seconds = time.perf_counter() - start
    return result


#: The default network's stated test accuracy on the digits (seed 0), full and quick runs;
#: tests/snn/test_training.py checks both.
DEFAULT_ACCURACY = {"full": 0.90, "quick": 0.80}


def train_default(
    quick: bool | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = "cpu",
) -> tuple[SpikingNet, TrainResult, Any]:
    """Train the default network: a rate-coded spiking MLP 64-128-10, ``T = 8``, ATan.

    scikit-learn's digits (``toolkit.data.digits(seed)``, 75/25 split), Adam (lr 2e-3,
    batch 64).  Full: 15 epochs, test accuracy >= 0.90 (0.92 with seed 0) in about 8 s on
    one CPU core.
    Quick (``TOOLKIT_QUICK=1`` or ``quick=True``): 4 epochs, test accuracy >= 0.80 (0.85).
    ``device`` follows the toolkit's one device policy (:func:`toolkit._backend.resolve_device`:
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``, or None for ``TOOLKIT_DEVICE``).

    Returns
    -------
    (SpikingNet, TrainResult, DigitsSplit)
    """
    from .._backend import quick_mode
    from ..data import digits

    quick = quick_mode() if quick is None else check_flag("quick", quick)
    check_seed(seed)
    check_flag("progress", progress)
    target = resolve_device(device)
    data = digits(seed=seed)
    net = spiking_mlp((64, 128, 10), steps=8, encoder="rate", seed=seed).to(target)
    result = train_bptt(
        net,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        epochs=4 if quick else 15,
        seed=seed,
        progress=progress,
    )
    return net, result, data
