"""Train and save the default model of :mod:`toolkit.verify` (``default_model.pt``).

Run from the repository root (a few seconds on one CPU core)::

    python -m toolkit.verify.data.make_default_model

Task: :func:`toolkit.verify.task.make_dataset` (synthetic sentiment, seed 0 for training,
seed 1 for testing).  Model: 1-layer TransformerClassifier, dim 64, 4 heads, FFN 128,
``no_var`` LayerNorm, ReLU, max_len 32.  Batches hold sentences of one length (the model
has no padding mask).  Adam, lr 3e-3, 1200 steps of 64 sentences, seed 0.  Weights are
stored in float32 with the config and the vocabulary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from toolkit.verify.model import TransformerClassifier
from toolkit.verify.task import VOCAB, make_dataset

CONFIG: dict[str, Any] = dict(
    vocab_size=len(VOCAB),
    dim=64,
    layers=1,
    heads=4,
    ffn_dim=128,
    num_classes=2,
    max_len=32,
    layernorm="no_var",
    activation="relu",
)


def _batches(ids, lens, labels, size, gen):
    by_len = {int(L): (lens == L).nonzero()[:, 0] for L in lens.unique()}
    keys = sorted(by_len)
    while True:
        L = keys[int(torch.randint(len(keys), (1,), generator=gen))]
        pool = by_len[L]
        pick = pool[torch.randint(len(pool), (size,), generator=gen)]
        yield ids[pick, :L], labels[pick]


def accuracy(model, ids, lens, labels) -> float:
    correct = 0
    with torch.no_grad():
        for L in lens.unique():
            sel = lens == L
            pred = model(model.embed(ids[sel, : int(L)])).argmax(-1)
            correct += int((pred == labels[sel]).sum())
    return correct / len(labels)


def train(steps: int = 1200, seed: int = 0) -> tuple[TransformerClassifier, float]:
    torch.manual_seed(seed)
    model = TransformerClassifier(**CONFIG)
    ids, lens, labels = make_dataset(4000, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    it = _batches(ids, lens, labels, 64, gen)
    model.train()
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(model.embed(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tid, tl, ty = make_dataset(1000, seed=1)
    return model, accuracy(model, tid, tl, ty)


def main(out: Path | None = None) -> None:
    t0 = time.time()
    torch.set_num_threads(1)  # tiny ops: threads only add overhead
    model, acc = train()
    out = out or Path(__file__).parent / "default_model.pt"
    blob = {
        "config": CONFIG,
        "vocab": list(VOCAB.words),
        "state_dict": {k: v.detach().float().clone() for k, v in model.state_dict().items()},
        "test_accuracy": acc,
    }
    torch.save(blob, out)
    print(
        f"test accuracy {acc:.3f}; saved {out} ({out.stat().st_size} bytes) "
        f"in {time.time() - t0:.1f}s"
    )


if __name__ == "__main__":
    main()
