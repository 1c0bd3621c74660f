r"""The full HDML objective (Zheng et al., CVPR 2019) and its training step.

An :class:`EmbeddingNet` maps inputs to features :math:`y` (the backbone) and features to
embeddings :math:`z = f(y)` (the embedding head).  One :meth:`HDML.step`:

1. embeds the batch and forms tuples (triplets, N-pair tuples, or a miner's triplets);
2. the real metric loss :math:`J_m` on the real tuples; its running mean is :math:`J_\text{avg}`;
3. synthetic negatives :math:`\hat z^-` (:func:`~toolkit.metric.hardness_aware_negative`);
4. the generator :math:`g` maps embeddings back to feature space; :math:`J_\text{recon} =
   \lVert g(z) - y\rVert^2` on the real batch, and the label-preserving softmax loss
   :math:`J_\text{soft}` asks a softmax classifier (trained on real features) to recognise the
   synthetic tuple's labels in :math:`g(\hat z)`; :math:`J_\text{gen} = J_\text{recon} +
   \lambda J_\text{soft}`;
5. the synthetic metric loss :math:`J_\text{syn}` is the same tuple loss on :math:`f(g(\hat z))`;
6. :math:`J_\text{metric} = e^{-\beta/J_\text{gen}} J_m + (1 - e^{-\beta/J_\text{gen}})
   J_\text{syn}` (with the running mean of :math:`J_\text{gen}`: while the generator is poor,
   the real loss dominates);
7. three separate optimizers: the backbone and head minimise :math:`J_\text{metric}`, the
   generator :math:`J_\text{gen}`, the classifier its cross-entropy on real features.

Hyper-parameters, with the paper's defaults (:data:`PAPER_CONFIG`): the pulling factor
:math:`\alpha = 90` (triplet; 7 for N-pair), the weighting :math:`\beta = 10^4` and the balance
:math:`\lambda = 0.5`.  :math:`\alpha` and :math:`\beta` are compared with loss values, so they
depend on the losses' scale: the paper's values suit its GoogLeNet features (1024-d, summed
reconstruction error); :data:`DIGITS_CONFIG` rescales them for the small digits model.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import (
    MAX_SIZE,
    check_choice,
    check_finite_tensor,
    check_flag,
    check_int,
    check_positive,
    check_real,
    check_seed,
    check_tensor,
    make_generator,
)
from .losses import TupleLoss, npair_loss, npair_negatives, triplet_loss
from .synthesis import PAPER_ALPHA, hardness, hardness_aware_negative

__all__ = [
    "DIGITS_CONFIG",
    "HDML",
    "PAPER_CONFIG",
    "EmbeddingNet",
    "Generator",
    "HDMLConfig",
    "RunningMean",
    "sample_triplets",
]


@dataclass(frozen=True)
class HDMLConfig:
    """HDML's hyper-parameters.

    Parameters
    ----------
    alpha : float
        Pulling factor :math:`\\alpha` of the synthesis (paper: 90 triplet, 7 N-pair).
    beta : float
        Weighting :math:`\\beta` of synthetic vs real metric loss (paper: :math:`10^4`).
    lam : float
        Balance :math:`\\lambda` of :math:`J_\\text{soft}` in :math:`J_\\text{gen}` (paper: 0.5).
    window : int
        Steps averaged into the running :math:`J_\\text{avg}` and :math:`J_\\text{gen}`.
    lr, lr_gen, lr_cls : float
        Adam learning rates of the metric (backbone + head), the generator, the classifier.
    margin : float
        Margin of the built-in triplet loss.
    l2_reg : float
        Embedding-norm weight of the built-in N-pair loss.
    """

    alpha: float = PAPER_ALPHA
    beta: float = 1e4
    lam: float = 0.5
    window: int = 20
    lr: float = 1e-3
    lr_gen: float = 1e-2
    lr_cls: float = 1e-3
    margin: float = 1.0
    l2_reg: float = 3e-3

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "lr", "lr_gen", "lr_cls"):
            check_positive(name, getattr(self, name))
        for name in ("lam", "margin", "l2_reg"):
            check_positive(name, getattr(self, name), allow_zero=True)
        check_int("window", self.window, 1)


#: The paper's values (official code defaults; alpha for the triplet loss).
PAPER_CONFIG = HDMLConfig()
#: Rescaled for the digits model: its triplet losses run from about 1 down to 0.05 and its
#: J_gen from about 30 to 1, so alpha = 0.1 and beta = 1 sweep the hardness and the
#: real/synthetic weight through (0, 1) during training as the paper's values do on CUB/Cars.
DIGITS_CONFIG = HDMLConfig(alpha=0.1, beta=1.0, lam=0.5, lr=2e-3, lr_gen=1e-2, lr_cls=1e-2)


class RunningMean:
    """Mean of the last ``window`` values pushed; ``value`` is None before the first."""

    def __init__(self, window: int) -> None:
        self._values: deque[float] = deque(maxlen=check_int("window", window, 1))

    def push(self, value: float) -> None:
        """Add a finite number (a NaN or Inf loss would poison every later mean)."""
        self._values.append(check_real("value", value))

    @property
    def value(self) -> float | None:
        return sum(self._values) / len(self._values) if self._values else None


class EmbeddingNet(nn.Module):
    """Backbone (inputs -> features ``y``) and linear embedding head (``y -> z``).

    Parameters
    ----------
    in_dim, hidden, feature_dim, embed_dim : int
        Flattened input size, hidden width, feature size, embedding size.
    """

    def __init__(
        self, in_dim: int = 64, hidden: int = 128, feature_dim: int = 64, embed_dim: int = 16
    ) -> None:
        super().__init__()
        dims = [check_int(n, v, 1, MAX_SIZE) for n, v in (("in_dim", in_dim), ("hidden", hidden))]
        self.in_dim = dims[0]
        self.feature_dim = check_int("feature_dim", feature_dim, 1, MAX_SIZE)
        self.embed_dim = check_int("embed_dim", embed_dim, 1, MAX_SIZE)
        self.backbone = nn.Sequential(
            nn.Flatten(),
            nn.Linear(dims[0], dims[1]),
            nn.ReLU(),
            nn.Linear(dims[1], self.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, self.embed_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return self.head(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class Generator(nn.Module):
    """Embedding -> feature space: ``Linear, ReLU, Linear`` (the paper's two-layer generator)."""

    def __init__(self, embed_dim: int, feature_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(
                check_int("embed_dim", embed_dim, 1, MAX_SIZE),
                check_int("hidden", hidden, 1, MAX_SIZE),
            ),
            nn.ReLU(),
            nn.Linear(hidden, check_int("feature_dim", feature_dim, 1, MAX_SIZE)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def sample_triplets(
    labels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random triplet per anchor whose class has another member and some other class.

    Returns index tensors ``(anchor, positive, negative)`` into ``labels`` (``[N]`` integer
    labels); the choices are drawn with ``generator`` (a CPU ``torch.Generator``).
    """
    check_tensor("labels", labels, dtypes=(torch.int64, torch.int32), ndim=1)
    if generator is None:
        raise TypeError("generator must be a CPU torch.Generator, got None")
    generator = make_generator(None, generator, cpu=True)
    lab = labels.cpu()
    same = lab.unsqueeze(0) == lab.unsqueeze(1)
    pos_ok = same & ~torch.eye(len(lab), dtype=torch.bool)
    neg_ok = ~same
    anchors = torch.nonzero(pos_ok.any(1) & neg_ok.any(1)).squeeze(1)
    if anchors.numel() == 0:
        raise ValueError("labels must hold two classes, one with at least two members")
    # A random score per candidate; the arg-max among allowed entries is a uniform choice.
    noise = torch.rand(len(anchors), len(lab), generator=generator)
    pos = torch.where(pos_ok[anchors], noise, -1.0).argmax(1)
    neg = torch.where(neg_ok[anchors], noise.flip(1), -1.0).argmax(1)
    return anchors.to(labels.device), pos.to(labels.device), neg.to(labels.device)


def _npair_indices(labels: torch.Tensor, generator: torch.Generator):
    lab = labels.cpu()
    a, p = [], []
    for c in torch.unique(lab):
        members = torch.nonzero(lab == c).squeeze(1)
        if len(members) >= 2:
            pick = members[torch.randperm(len(members), generator=generator)[:2]]
            a.append(int(pick[0]))
            p.append(int(pick[1]))
    if len(a) < 2:
        raise ValueError("N-pair tuples need two classes with at least two members each")
    return torch.tensor(a, device=labels.device), torch.tensor(p, device=labels.device)


@dataclass
class _Tuples:
    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor  # [T, D] or [T, K, D]
    anchor_labels: torch.Tensor
    negative_labels: torch.Tensor  # shaped like negative without D


class HDML:
    """Trains an :class:`EmbeddingNet` with HDML (or, with ``enabled=False``, the base loss).

    Parameters
    ----------
    model : EmbeddingNet
        The network; its backbone and head are what HDML trains.
    num_classes : int
        Training classes (labels must lie in ``[0, num_classes)``), for the softmax classifier.
    loss : {"triplet", "npair"} or callable
        The base metric loss: built-in, or a tuple loss (for example
        :func:`~toolkit.metric.from_pml` of a pytorch-metric-learning loss) used on triplets.
    config : HDMLConfig
        Hyper-parameters; see :data:`PAPER_CONFIG` and :data:`DIGITS_CONFIG`.
    enabled : bool
        False trains the same model with the base loss only (the baseline): same tuples,
        same optimizer for the metric, no synthesis.
    miner : callable, optional
        ``miner(embeddings, labels) -> (anchor, positive, negative)`` index tensors, for
        example a pytorch-metric-learning triplet miner; default: one random triplet per
        anchor (triplet loss) or one random pair per class (N-pair loss).
    seed : int
        Seeds the generator's and classifier's initialisation and the tuple sampling.

    Examples
    --------
    >>> torch.manual_seed(0) and None
    >>> h = HDML(EmbeddingNet(embed_dim=4), num_classes=2, config=DIGITS_CONFIG)
    >>> x, y = torch.rand(8, 64), torch.tensor([0, 1] * 4)
    >>> sorted(h.step(x, y))[:3]
    ['hardness', 'j_avg', 'j_cls']
    """

    def __init__(
        self,
        model: EmbeddingNet,
        num_classes: int,
        loss: str | TupleLoss = "triplet",
        config: HDMLConfig = PAPER_CONFIG,
        *,
        enabled: bool = True,
        miner: Callable[..., Any] | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, EmbeddingNet):
            raise TypeError(f"model must be an EmbeddingNet, got {type(model).__name__}")
        if not isinstance(config, HDMLConfig):
            raise TypeError(f"config must be an HDMLConfig, got {type(config).__name__}")
        self.model, self.config = model, config
        self.num_classes = check_int("num_classes", num_classes, 2, MAX_SIZE)
        self.enabled = check_flag("enabled", enabled)
        if isinstance(loss, str):
            self.kind = check_choice("loss", loss, ("triplet", "npair"))
            self.loss: TupleLoss = (
                (lambda a, p, n: triplet_loss(a, p, n, config.margin))
                if self.kind == "triplet"
                else (lambda a, p, n: npair_loss(a, p, n, config.l2_reg))
            )
        elif callable(loss):
            self.kind, self.loss = "triplet", loss
        else:
            raise TypeError(f"loss must be 'triplet', 'npair' or a callable, got {loss!r}")
        if miner is not None and not callable(miner):
            raise TypeError(f"miner must be callable, got {type(miner).__name__}")
        if miner is not None and self.kind == "npair":
            raise ValueError("miner picks triplets; the N-pair loss takes one pair per class")
        self.miner = miner
        self._rng = torch.Generator().manual_seed(check_seed(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = Generator(model.embed_dim, model.feature_dim)
            self.classifier = nn.Linear(model.feature_dim, self.num_classes)
        device = next(model.parameters()).device
        self.generator.to(device)
        self.classifier.to(device)
        self.opt_metric = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.opt_gen = torch.optim.Adam(self.generator.parameters(), lr=config.lr_gen)
        self.opt_cls = torch.optim.Adam(self.classifier.parameters(), lr=config.lr_cls)
        self.j_avg = RunningMean(config.window)
        self.j_gen = RunningMean(config.window)
        self.history: list[dict[str, float]] = []

    # -- tuples ------------------------------------------------------------------------------
    def _tuples(self, z: torch.Tensor, labels: torch.Tensor) -> _Tuples:
        if self.kind == "npair":
            a, p = _npair_indices(labels, self._rng)
            count = len(p)
            others = ~torch.eye(count, dtype=torch.bool, device=z.device)
            neg_lab = labels[p].unsqueeze(0).expand(count, count)[others].reshape(count, count - 1)
            return _Tuples(z[a], z[p], npair_negatives(z[p]), labels[a], neg_lab)
        if self.miner is not None:
            mined = self.miner(z.detach(), labels)
            if len(mined) != 3:
                raise ValueError(
                    f"miner must return (anchor, positive, negative) indices, got {len(mined)} "
                    "tensors (pair miners do not fit triplet tuples)"
                )
            a, p, n = (t.to(z.device).long() for t in mined)
            if a.numel() == 0:  # nothing mined: fall back to random triplets this step
                a, p, n = sample_triplets(labels, self._rng)
        else:
            a, p, n = sample_triplets(labels, self._rng)
        return _Tuples(z[a], z[p], z[n], labels[a], labels[n])

    # -- one step ------------------------------------------------------------------------------
    def _check_x(self, x: Any) -> torch.Tensor:
        """Inputs of the model's dtype and device, ``in_dim`` entries per row, finite."""
        param = next(self.model.parameters())
        check_tensor("x", x, dtypes=(param.dtype,), min_ndim=2, nonempty=True, device=param.device)
        if x[0].numel() != self.model.in_dim:
            raise ValueError(
                f"x must hold in_dim={self.model.in_dim} entries per row, got shape "
                f"{tuple(x.shape)}"
            )
        return check_finite_tensor("x", x)

    def step(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One training step on a batch; returns the step's losses and weights as floats."""
        self._check_x(x)
        check_tensor("labels", labels, dtypes=(torch.int64, torch.int32), ndim=1)
        if labels.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have {x.shape[0]} entries, got {labels.shape[0]}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.tolist()}")
        labels = labels.long()
        cfg = self.config
        self.model.train()
        y = self.model.features(x)
        z = self.model.embed(y)
        t = self._tuples(z, labels)
        j_m = self.loss(t.anchor, t.positive, t.negative)
        stats = {"j_m": j_m.item()}
        # J_avg is the mean of the *previous* steps' losses (the current one on the first step).
        j_avg = self.j_avg.value if self.j_avg.value is not None else j_m.item()
        j_avg = max(j_avg, 1e-12)  # a zero loss means "hardest": lambda -> 0
        self.j_avg.push(j_m.item())
        stats["j_avg"] = j_avg
        stats["hardness"] = hardness(j_avg, cfg.alpha)
        if not self.enabled:
            self.opt_metric.zero_grad()
            j_m.backward()
            self.opt_metric.step()
            stats.update(j_metric=j_m.item())
            self.history.append(stats)
            return stats

        neg_hat = hardness_aware_negative(t.anchor, t.positive, t.negative, j_avg, cfg.alpha)
        n_t, dim = t.anchor.shape
        synth = torch.cat([t.anchor, t.positive, neg_hat.reshape(-1, dim)])
        synth_labels = torch.cat([t.anchor_labels, t.anchor_labels, t.negative_labels.reshape(-1)])
        y_recon = self.generator(z)
        y_synth = self.generator(synth)
        j_recon = (y_recon - y.detach()).pow(2).sum(1).mean()
        j_soft = F.cross_entropy(self.classifier(y_synth), synth_labels)
        j_gen = j_recon + cfg.lam * j_soft
        z_synth = self.model.embed(y_synth)
        a_s, p_s, n_s = z_synth[:n_t], z_synth[n_t : 2 * n_t], z_synth[2 * n_t :]
        j_syn = self.loss(a_s, p_s, n_s.reshape(neg_hat.shape))
        gen_running = self.j_gen.value
        w_real = 1.0 if gen_running is None else math.exp(-cfg.beta / max(gen_running, 1e-12))
        self.j_gen.push(j_gen.item())
        j_metric = w_real * j_m + (1.0 - w_real) * j_syn
        j_cls = F.cross_entropy(self.classifier(y.detach()), labels)

        # Each loss updates only its own parameters: gradients are taken per group, so J_gen
        # never moves the embedding and J_metric never moves the generator.
        metric_params = list(self.model.parameters())
        gen_params = list(self.generator.parameters())
        cls_params = list(self.classifier.parameters())
        g_metric = torch.autograd.grad(j_metric, metric_params, retain_graph=True)
        g_gen = torch.autograd.grad(j_gen, gen_params, retain_graph=True)
        g_cls = torch.autograd.grad(j_cls, cls_params)
        for opt, params, grads in (
            (self.opt_metric, metric_params, g_metric),
            (self.opt_gen, gen_params, g_gen),
            (self.opt_cls, cls_params, g_cls),
        ):
            for p_, g_ in zip(params, grads):
                p_.grad = g_
            opt.step()
        stats.update(
            j_syn=j_syn.item(),
            j_recon=j_recon.item(),
            j_soft=j_soft.item(),
            j_gen=j_gen.item(),
            j_cls=j_cls.item(),
            w_real=w_real,
            j_metric=j_metric.item(),
        )
        self.history.append(stats)
        return stats

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of ``x`` in evaluation mode."""
        self._check_x(x)
        self.model.eval()
        return self.model(x)
