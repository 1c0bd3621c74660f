"""The paper's experiment on an embedded data set: zero-shot retrieval on scikit-learn's digits.

Train on some digit classes, evaluate retrieval (Recall@K, NMI, MAP@R) on the unseen ones,
HDML against the same base loss without it: same model, same tuples, same steps and batch,
several seeds, mean and standard deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .._backend import quick_mode
from .._checks import MAX_SIZE, check_choice, check_flag, check_int, check_seed
from ..data import digits
from .evaluation import map_at_r, nmi, recall_at_k
from .hdml import DIGITS_CONFIG, HDML, EmbeddingNet, HDMLConfig

__all__ = ["Comparison", "RunResult", "compare_on_digits", "train_on_digits"]

KS = (1, 2, 4, 8)
METHODS = ("baseline", "hdml")


@dataclass
class RunResult:
    """One training run: its method, seed, per-step history and test metrics."""

    method: str
    seed: int
    history: list[dict[str, float]]
    metrics: dict[str, float]
    embeddings: torch.Tensor = field(repr=False)
    labels: torch.Tensor = field(repr=False)


@dataclass
class Comparison:
    """HDML vs baseline over seeds.  ``runs[method]`` lists the :class:`RunResult` per seed."""

    runs: dict[str, list[RunResult]]
    steps: int
    loss: str

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{method: {metric: (mean, std)}}`` over seeds (std with ``ddof=1``, 0 for one)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for method, runs in self.runs.items():
            keys = runs[0].metrics.keys()
            out[method] = {}
            for key in keys:
                vals = np.array([r.metrics[key] for r in runs])
                std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
                out[method][key] = (float(vals.mean()), std)
        return out

    def rows(self) -> list[list[str]]:
        """Table rows ``[metric, baseline mean ± std, hdml mean ± std]`` in percent."""
        s = self.summary()
        rows = []
        for key in s[METHODS[0]]:
            row = [key]
            for m in METHODS:
                mean, std = s[m][key]
                row.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
            rows.append(row)
        return rows


def _evaluate(emb: torch.Tensor, labels: torch.Tensor, seed: int) -> dict[str, float]:
    rec = recall_at_k(emb, labels, KS)
    metrics = {f"Recall@{k}": v for k, v in rec.items()}
    metrics["NMI"] = nmi(emb, labels, seed=seed)
    metrics["MAP@R"] = map_at_r(emb, labels)
    return metrics


def _balanced_batch(labels: torch.Tensor, per_class: int, classes: int, gen: torch.Generator):
    """Indices of ``classes`` random classes with ``per_class`` random members each."""
    uniq = torch.unique(labels)
    chosen = uniq[torch.randperm(len(uniq), generator=gen)[:classes]]
    parts = []
    for c in chosen:
        members = torch.nonzero(labels == c).squeeze(1)
        parts.append(members[torch.randint(len(members), (per_class,), generator=gen)])
    return torch.cat(parts)


def train_on_digits(
    method: str = "hdml",
    *,
    seed: int = 0,
    steps: int = 600,
    loss: str = "triplet",
    config: HDMLConfig = DIGITS_CONFIG,
    train_classes: Sequence[int] = (0, 1, 2, 3, 4),
    test_classes: Sequence[int] = (5, 6, 7, 8, 9),
    per_class: int = 12,
    embed_dim: int = 16,
    progress: bool = False,
) -> RunResult:
    """Train one embedding on the train classes and evaluate retrieval on the test classes.

    Parameters
    ----------
    method : {"hdml", "baseline"}
        HDML, or the base loss alone with the same tuples and budget.
    seed : int
        Seeds the model, the batches and the tuples (the split is the same for all seeds).
    steps : int
        Training steps; each sees ``per_class`` images of every train class.
    loss : {"triplet", "npair"}
        The base metric loss.
    config : HDMLConfig
        HDML's hyper-parameters (the baseline uses its ``lr`` and ``margin`` too).
    train_classes, test_classes : sequence of int
        Disjoint digit classes (a zero-shot split), at least two of each (retrieval among
        one class is trivially perfect).
    per_class, embed_dim : int
        Batch images per class; embedding size.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    RunResult
        With metrics ``Recall@1/2/4/8``, ``NMI``, ``MAP@R`` on the test classes.
    """
    check_choice("method", method, METHODS)
    check_seed(seed)
    check_int("steps", steps, 1)
    check_int("per_class", per_class, 2, MAX_SIZE)
    check_flag("progress", progress)
    for name, classes in (("train_classes", train_classes), ("test_classes", test_classes)):
        if isinstance(classes, str) or not isinstance(classes, Sequence):
            raise TypeError(f"{name} must be a sequence of digit classes, got {classes!r}")
        if len(classes) < 2:
            raise ValueError(f"{name} must hold at least 2 classes, got {name}={classes!r}")
    split = digits(seed=0, train_classes=train_classes, test_classes=test_classes)
    # The classifier needs labels 0..C-1: number the train classes in order.
    remap = {c: i for i, c in enumerate(split.classes_train)}
    y_train = torch.tensor([remap[int(c)] for c in split.y_train])
    torch.manual_seed(seed)
    model = EmbeddingNet(embed_dim=embed_dim)
    trainer = HDML(model, len(remap), loss=loss, config=config, enabled=method == "hdml", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    iterator = range(steps)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"{method} seed {seed}", leave=False)
    for _ in iterator:
        idx = _balanced_batch(y_train, per_class, len(remap), gen)
        trainer.step(split.x_train[idx], y_train[idx])
    emb = trainer.embed(split.x_test)
    return RunResult(
        method=method,
        seed=seed,
        history=trainer.history,
        metrics=_evaluate(emb, split.y_test, seed),
        embeddings=emb,
        labels=split.y_test,
    )


def compare_on_digits(
    seeds: Sequence[int] | None = None,
    *,
    steps: int | None = None,
    loss: str = "triplet",
    config: HDMLConfig = DIGITS_CONFIG,
    progress: bool = True,
    **kwargs,
) -> Comparison:
    """HDML vs the base loss on the zero-shot digits split, over several seeds.

    Quick mode (``TOOLKIT_QUICK=1``) defaults to 3 seeds x 150 steps, else 5 seeds x 600 steps.

    Parameters
    ----------
    seeds : sequence of int, optional
        One run of each method per seed.
    steps : int, optional
        Steps per run (the same for both methods).
    loss, config, progress, **kwargs
        Passed to :func:`train_on_digits`.

    Returns
    -------
    Comparison
        ``summary()`` gives mean ± std per metric and method, ``rows()`` a table.

    Examples
    --------
    >>> c = compare_on_digits(seeds=[0], steps=5, progress=False)
    >>> sorted(c.summary()), len(c.rows())
    (['baseline', 'hdml'], 6)
    """
    quick = quick_mode()
    if seeds is not None and (isinstance(seeds, str) or not isinstance(seeds, Sequence)):
        raise TypeError(f"seeds must be a sequence of ints, got {seeds!r}")
    seeds = tuple(seeds) if seeds is not None else tuple(range(3 if quick else 5))
    if not seeds:
        raise ValueError("seeds must not be empty")
    # every seed up front: a bad one would otherwise fail after the others had trained
    seeds = tuple(check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds))
    check_flag("progress", progress)
    steps = check_int("steps", steps if steps is not None else (150 if quick else 600), 1)
    runs: dict[str, list[RunResult]] = {m: [] for m in METHODS}
    jobs = [(m, s) for s in seeds for m in METHODS]
    iterator = jobs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(jobs, desc="HDML vs baseline")
    for method, seed in iterator:
        runs[method].append(
            train_on_digits(method, seed=seed, steps=steps, loss=loss, config=config, **kwargs)
        )
    return Comparison(runs=runs, steps=steps, loss=loss)
