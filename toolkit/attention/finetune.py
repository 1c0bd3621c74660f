"""Fine-tuning demo: a dense model pruned to N:M attention recovers in a couple of epochs
(the DFSS claim, on a CPU-sized task).

**Task** (:func:`counting_task`): a ``[CLS]`` token followed by ``length`` tokens, each
``a``, ``b`` or one of several fillers; the label says whether ``a`` occurs more often
than ``b`` (counts differ by 1 to 3, so every ``a``/``b`` matters).  The classifier reads
the CLS position of a one-layer :class:`~toolkit.models.TinyTransformer`, so the CLS row must
*spread* its attention over all ``a``/``b`` tokens -- exactly what N:M pruning disturbs.

**Protocol** (:func:`finetune_demo`), for every seed: train the dense model; then for every
pattern, swap the attention for the sparse one (:func:`pattern_attention`), measure test
accuracy *before* fine-tuning, fine-tune ``epochs`` epochs, measure again *after*.  The
``"dense"`` pattern is the control (the same extra epochs, dense).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from .._backend import resolve_device, single_thread
from .._checks import check_flag, check_int, check_real, check_seed
from ..models import AttentionFn, TinyTransformer
from .masks import MAX_SIZE
from .patterns import PatternLike, check_sequence, parse_pattern

__all__ = ["FinetuneResult", "counting_task", "finetune_demo", "pattern_attention"]

CLS, A, B, FILLERS = 0, 1, 2, 8
MAX_EPOCHS = 1000
VOCAB = 3 + FILLERS


def counting_task(count: int, length: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` examples of the counting task (module docstring).

    Parameters
    ----------
    count : int
        Number of examples, ``1 <= count < 2**63``.
    length : int
        Tokens after ``[CLS]``, ``5 <= length < 2**63`` (room for the ``a`` and ``b``
        tokens).
    seed : int
        Seeds the draw.

    Returns
    -------
    ids : torch.Tensor
        int64 ``[count, length + 1]``, ``[CLS]`` (id 0) first.
    labels : torch.Tensor
        int64 ``[count]``: 1 where ``a`` (id 1) occurs more often than ``b`` (id 2).

    Examples
    --------
    >>> ids, y = counting_task(4, length=16, seed=0)
    >>> ids.shape, bool(((ids[:, 1:] == 1).sum(1) > (ids[:, 1:] == 2).sum(1)).eq(y.bool()).all())
    (torch.Size([4, 17]), True)
    """
    count = check_int("count", count, 1, MAX_SIZE)
    length = check_int("length", length, 5, MAX_SIZE)
    seed = check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    ids = 3 + torch.randint(FILLERS, (count, length), generator=g)
    y = torch.randint(2, (count,), generator=g)
    small = torch.randint(1, length // 4 + 1, (count,), generator=g)
    big = small + torch.randint(1, 4, (count,), generator=g)
    n_a = torch.where(y == 1, big, small)
    n_b = torch.where(y == 1, small, big)
    order = torch.argsort(torch.rand(count, length, generator=g), dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(length).expand(count, -1))
    ids = torch.where(rank < n_a[:, None], A, ids)
    ids = torch.where((rank >= n_a[:, None]) & (rank < (n_a + n_b)[:, None]), B, ids)
    return torch.cat([torch.full((count, 1), CLS), ids], 1), y


def pattern_attention(pattern: PatternLike) -> AttentionFn:
    """An ``attention_fn`` for a model: the pattern's :meth:`~toolkit.attention.Pattern.attention`.

    Parameters
    ----------
    pattern : Pattern or str
        A pattern, or a string :func:`~toolkit.attention.parse_pattern` reads: ``"dense"``,
        ``"N:M"`` (:func:`~toolkit.attention.nm_attention`), ``"dsa@0.25"`` (DSA at density
        0.25), ``"topk@0.5"``, ``"local@0.5"``, ``"strided@0.5"``.

    Returns
    -------
    AttentionFn
        ``fn(q, k, v, scale=None, attn_mask=None, return_probs=False)`` (the pattern's
        ``attention`` method).

    Examples
    --------
    >>> q = k = v = torch.randn(2, 8, 4)
    >>> from toolkit.attention import nm_attention
    >>> torch.equal(pattern_attention("2:4")(q, k, v), nm_attention(q, k, v, 2, 4))
    True
    """
    # AttentionFn is the return_probs=True form, the one the models call.
    return cast(AttentionFn, parse_pattern(pattern).attention)


@contextlib.contextmanager
def _precision(device: torch.device) -> Iterator[None]:
    """bfloat16 autocast on CUDA (q, k, v then reach the fused N:M kernels); nothing on CPU."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    else:
        yield


def _without_probs(fn: AttentionFn) -> AttentionFn:
    """``fn`` for a model that is never traced: it asks for no probabilities.

    The models call their ``attention_fn`` with ``return_probs=True`` but use the
    probabilities only to fill a trace; without them N:M attention on CUDA runs the fused
    forward and backward kernels instead of the dense reference.  The output is the same.
    """

    def attend(q, k, v, scale=None, attn_mask=None, return_probs=False):
        return fn(q, k, v, scale, attn_mask, False), None

    return cast(AttentionFn, attend)


def _accuracy(model, ids, y) -> float:
    model.eval()
    with torch.no_grad(), _precision(ids.device):
        return float((model.classify(ids).argmax(-1) == y).double().mean())


def _train(model, ids, y, epochs, lr, batch, seed, bar=None) -> None:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch):
            idx = idx.to(ids.device)
            with _precision(ids.device):
                logits = model.classify(ids[idx])
            loss = F.cross_entropy(logits.float(), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if bar is not None:
            bar.update(1)


@dataclass
class FinetuneResult:
    """What :func:`finetune_demo` measured.

    Attributes
    ----------
    table : dict of str to numpy.ndarray
        One row per (seed, pattern): ``pattern`` (its label), ``seed``, ``dense_acc``,
        ``before_acc`` (pruned, not fine-tuned), ``after_acc`` (after fine-tuning).
    summary : dict of str to numpy.ndarray
        One row per pattern: ``pattern`` and the means and standard deviations over seeds
        (``dense_acc_mean``, ``dense_acc_std``, ...).
    seconds : float
        Wall time.
    """

    table: dict[str, np.ndarray]
    summary: dict[str, np.ndarray]
    seconds: float

    def __str__(self) -> str:
        s = self.summary
        lines = [f"{'pattern':>10} {'dense':>14} {'before FT':>14} {'after FT':>14}"]
        for i, p in enumerate(s["pattern"]):
            cells = [
                f"{s[c + '_mean'][i]:.3f} ± {s[c + '_std'][i]:.3f}"
                for c in ("dense_acc", "before_acc", "after_acc")
            ]
            lines.append(f"{p:>10} " + " ".join(f"{c:>14}" for c in cells))
        return "\n".join(lines)


def finetune_demo(
    patterns: Sequence[PatternLike] = ("dense", "2:4", "1:2"),
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int = 2,
    quick: bool = False,
    progress: bool = True,
    lr: float = 3e-3,
    device: str | torch.device | None = None,
) -> FinetuneResult:
    """Train dense, prune to each pattern, fine-tune ``epochs`` epochs; accuracies over seeds.

    Fine-tuning uses Adam at ``lr``, the dense training rate by default (1e-3 recovered about
    half as much in two epochs; 5e-3 and above made the pruned models unstable).

    Sizes: 4096 training and 2048 test examples of length 32 and 12 dense epochs (``quick``:
    1024 / 1024 examples, 8 dense epochs: under 20 s for three seeds on one CPU core).
    Training runs on one thread (restored afterwards): faster for a model this small.
    The seed fixes the data, the initialisation and the batch order.

    On CUDA the models train and evaluate under bfloat16 autocast, so N:M patterns run the
    fused N:M attention kernels forward and backward (``kernels/nm_attention.cu``,
    ``kernels/nm_attention_bwd.cu``); accuracies then differ slightly from the CPU's float32
    run.  Fine-tuned models never ask their attention for probabilities (nothing traces
    them), which is what lets the fused path take them.

    Parameters
    ----------
    patterns : sequence of Pattern or str
        The patterns to prune to (``"dense"`` is the control), at least one; see
        :func:`pattern_attention`.
    seeds : sequence of int
        One dense model per seed, at least one (each in ``[0, 2**64 - 1]``).
    epochs : int
        Fine-tuning epochs, ``0 <= epochs <= 1000`` (a demo of recovery in a couple of
        epochs; the bound keeps a mistyped value from running for days).
    quick : bool
        The small sizes above.
    progress : bool
        Show a progress bar.
    lr : float
        Fine-tuning learning rate, in ``(0, 1)``.
    device : str, torch.device or None
        Where to train (:func:`toolkit._backend.resolve_device`'s policy: ``None`` follows the
        active backend, ``"auto"`` is CUDA when present).

    Returns
    -------
    FinetuneResult
        The per-seed table (``pattern`` holds the patterns' labels) and its summary.

    Raises
    ------
    TypeError, ValueError
        On a bad argument (named in the message), including an empty ``patterns`` or
        ``seeds`` (whose summary would be NaN).

    Examples
    --------
    >>> res = finetune_demo(("2:4",), seeds=(0,), epochs=1, quick=True, progress=False)
    >>> sorted(res.table)
    ['after_acc', 'before_acc', 'dense_acc', 'pattern', 'seed']
    """
    parsed = [
        parse_pattern(p, "patterns") for p in check_sequence("patterns", patterns, nonempty=True)
    ]
    labels = [p.label for p in parsed]
    fns = {p.label: pattern_attention(p) for p in parsed}
    epochs = check_int("epochs", epochs, 0, MAX_EPOCHS)
    lr = check_real("lr", lr, 0.0, 1.0, lo_open=True, hi_open=True)
    seed_list = [check_seed(s, "seeds") for s in check_sequence("seeds", seeds, nonempty=True)]
    quick, progress = check_flag("quick", quick), check_flag("progress", progress)
    dev = resolve_device(device)
    n_train, n_test, dense_epochs = (1024, 1024, 8) if quick else (4096, 2048, 12)
    start = time.perf_counter()
    with single_thread():  # a model this small runs fastest on one thread
        return _run(
            labels, fns, seed_list, epochs, n_train, n_test, dense_epochs, progress, start, lr, dev
        )


def _run(
    patterns: list[str],
    fns: dict[str, AttentionFn],
    seeds: list[int],
    epochs: int,
    n_train: int,
    n_test: int,
    dense_epochs: int,
    progress: bool,
    start: float,
    lr: float,
    device: torch.device,
) -> FinetuneResult:
    from tqdm.auto import tqdm

    rows: dict[str, list] = {
        c: [] for c in ("pattern", "seed", "dense_acc", "before_acc", "after_acc")
    }
    total = len(seeds) * (dense_epochs + len(patterns) * epochs)
    with tqdm(total=total, desc="fine-tuning demo", unit="epoch", disable=not progress) as bar:
        for seed in seeds:
            ids, y = (t.to(device) for t in counting_task(n_train, seed=1000 + seed))
            test_ids, test_y = (t.to(device) for t in counting_task(n_test, seed=2000 + seed))
            dense = TinyTransformer(
                vocab_size=VOCAB,
                dim=32,
                layers=1,
                heads=2,
                ffn_dim=64,
                max_len=ids.shape[1],
                seed=seed,
                qk_gain=1.0,
            ).to(device)
            _train(dense, ids, y, dense_epochs, 3e-3, 64, seed, bar)
            dense_acc = _accuracy(dense, test_ids, test_y)
            for pattern in patterns:
                model = copy.deepcopy(dense)
                model.attention_fn = _without_probs(fns[pattern])
                before = _accuracy(model, test_ids, test_y)
                _train(model, ids, y, epochs, lr, 64, seed + 1, bar)
                for key, val in (
                    ("pattern", pattern),
                    ("seed", seed),
                    ("dense_acc", dense_acc),
                    ("before_acc", before),
                    ("after_acc", _accuracy(model, test_ids, test_y)),
                ):
                    rows[key].append(val)
    table = {k: np.asarray(v, dtype=object if k == "pattern" else None) for k, v in rows.items()}
    summary: dict[str, list] = {"pattern": list(patterns)}
    for col in ("dense_acc", "before_acc", "after_acc"):
        vals = [table[col][table["pattern"] == p].astype(float) for p in patterns]
        summary[col + "_mean"] = [v.mean() for v in vals]
        summary[col + "_std"] = [v.std() for v in vals]
    summ = {
        k: np.asarray(v, dtype=object if k == "pattern" else np.float64) for k, v in summary.items()
    }
    return FinetuneResult(table, summ, time.perf_counter() - start)
