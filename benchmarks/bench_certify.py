"""Multi-GPU scaling of toolkit.verify.certify_dataset (issue 15, item 6).

Certifies the same data set (sentences of the embedded sentiment task, the shipped one-layer
model or a deeper random one, CROWN radius per (sentence, position)) with P = 1, 2, 4, ...
GPUs up to N, each run launched by this script as ``torchrun --standalone --nproc-per-node P``
(the ranks take chunks from certify_dataset's shared work queue), and prints per P

* T_P: seconds of the certification itself on rank 0 (from the start of the work to the
  gathered result; process start-up, CUDA initialisation and a warm-up bound are outside);
* the whole launch's wall time (start-up included), for honesty;
* efficiency = T_1 / (P * T_P) (1.0 is perfect scaling; the issue's target is >= 0.9);
* imbalance = max busy / mean busy over the ranks (1.0: every rank equally busy), where a
  rank's busy seconds are the time inside its chunks' bound work;
* per rank: busy seconds, seconds from the start to its last chunk, chunks and (sentence,
  position) pairs it did;
* whether the P-GPU radii equal the 1-GPU radii bit for bit (they must: the chunks, and so
  every bound computation, do not depend on the number of processes or who claims them).

Usage (on a machine with N GPUs)::

    python benchmarks/bench_certify.py --gpus 2
    python benchmarks/bench_certify.py --gpus 2 --sentences 64 --cpu   # a CPU smoke run (gloo)

Needs torch only (no plotly).  Exit status 1 when the radii differ across P by more than
the bisection's resolution (or the labels or failures differ).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _data(args):
    import torch

    from toolkit.verify import TransformerClassifier, load_default_model, make_dataset

    model, _ = load_default_model()
    if args.layers > 1:  # a deeper random model of the same shape (the shipped one has 1 layer)
        torch.manual_seed(0)
        model = TransformerClassifier(
            model.embedding.num_embeddings, dim=64, heads=4, ffn_dim=128, layers=args.layers
        ).eval()
    ids, lens, labels = make_dataset(args.sentences, seed=0, min_len=6, max_len=args.max_len)
    data = [ids[i, : int(lens[i])] for i in range(args.sentences)]
    # the random deeper model is certified on its own predictions, the trained one on the task's
    return model, data, (labels if args.layers == 1 else None)


def worker(args) -> None:
    """One rank: warm up the device, then certify the data set into ``args.out``."""
    import torch

    from toolkit.verify import RadiusSearch, certified_radius, certify_dataset

    model, data, labels = _data(args)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}" if torch.cuda.is_available() and not args.cpu else "cpu")
    if dev.type == "cpu":
        torch.set_num_threads(1)
    e = model.embed(data[0]).detach().to(dev)  # warm-up: CUDA context, cuBLAS, allocator
    certified_radius(model, e, 0, [0], tol=0.25, device=dev)
    search = RadiusSearch(p=2, tol=args.tol, max_eps=1.0, method=args.method)
    certify_dataset(
        model,
        data,
        search,
        labels=labels,
        batch_size=args.batch_size,
        out=args.out,
        progress=False,
        device=dev,
    )


def launch(n: int, args, out: Path, timeout: float) -> float:
    """Run the workers on ``n`` processes; returns the launch's wall seconds."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={n}", __file__, "--worker", "--out", str(out)]
    cmd += ["--sentences", str(args.sentences), "--max-len", str(args.max_len)]
    cmd += ["--tol", str(args.tol), "--batch-size", str(args.batch_size)]
    cmd += ["--method", args.method, "--layers", str(args.layers)] + ["--cpu"] * args.cpu
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # NVLink multicast stays off on shared machines (it can take the host's GPUs down)
    env.update(NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
    t0 = time.perf_counter()
    # its own session, so that a timeout ends torchrun and its workers (and nothing else)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        print(stdout[-2000:], stderr[-4000:], sep="\n")
        raise SystemExit(
            f"torchrun with {n} process(es) ran past {timeout:.0f} s: stopped "
            "(use fewer --sentences or a larger --budget)"
        ) from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(stdout[-4000:], stderr[-8000:], sep="\n")
        raise SystemExit(f"torchrun with {n} process(es) failed (exit {proc.returncode})")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpus", type=int, default=None, help="N (default: all visible GPUs)")
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=12, help="sentences have 6..max-len words")
    ap.add_argument("--tol", type=float, default=1.0 / 64)
    ap.add_argument("--batch-size", type=int, default=8, help="sentences per chunk")
    ap.add_argument("--method", default="crown")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--cpu", action="store_true", help="gloo processes on the CPU instead")
    ap.add_argument("--budget", type=float, default=600, help="seconds for all launches")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    import numpy as np
    import torch

    from toolkit.verify import load_certification

    N = args.gpus or (torch.cuda.device_count() if not args.cpu else 2)
    if not args.cpu and torch.cuda.device_count() < max(N, 1):
        raise SystemExit(f"--gpus {N} but torch sees {torch.cuda.device_count()} GPU(s)")
    if N < 2:
        raise SystemExit("needs N >= 2 to measure scaling")
    counts = sorted({1, N} | {2**k for k in range(1, N.bit_length()) if 2**k <= N})
    kind = "CPU processes (gloo)" if args.cpu else f"GPUs ({torch.cuda.get_device_name(0)})"
    print(
        f"certify_dataset scaling: {args.sentences} sentences of 6..{args.max_len} words, "
        f"{args.layers}-layer model, {args.method} radius to tol {args.tol:g}, "
        f"{args.batch_size} sentences per chunk, P = {counts} {kind}, shared work queue",
        flush=True,
    )
    res, wall = {}, {}
    deadline = time.perf_counter() + args.budget
    with tempfile.TemporaryDirectory() as tmp:
        for n in counts:
            out = Path(tmp) / f"cert{n}.npz"
            wall[n] = launch(n, args, out, deadline - time.perf_counter())
            res[n] = load_certification(out)
            print(
                f"  {n} process(es): T = {res[n].meta['seconds']:.2f} s (launch {wall[n]:.1f} s)",
                flush=True,
            )
    T = {n: res[n].meta["seconds"] for n in res}
    print(f"(of {res[1].meta['chunks']} chunks; T and busy in seconds)")
    print(
        f"\n{'P':>3} {'T_P':>8} {'launch':>7} {'eff':>6} {'imbal':>6}  "
        "per rank: busy / to-last-chunk / chunks / pairs"
    )
    for n in counts:
        ranks = res[n].meta["ranks"]
        busy = np.array([st["busy"] for st in ranks])
        eff = T[1] / (n * T[n])
        per = "  ".join(
            f"r{r}: {st['busy']:.2f}/{st['seconds']:.2f}/{st['chunks']}/{st['pairs']}"
            for r, st in enumerate(ranks)
        )
        print(
            f"{n:>3} {T[n]:>8.2f} {wall[n]:>7.1f} {eff:>6.3f} "
            f"{busy.max() / busy.mean():>6.3f}  {per}"
        )
    print(
        "eff = T_1 / (P * T_P) (target >= 0.9); imbal = max busy / mean busy over the ranks; "
        "busy = seconds inside the rank's chunks; sum of busy over the ranks vs T_1 shows the "
        "per-process slowdown that no scheduling can remove:"
    )
    for n in counts:
        total = sum(st["busy"] for st in res[n].meta["ranks"])
        print(f"  P={n}: sum of busy {total:.2f} s = {total / T[1]:.3f} x T_1")
    # what one chunk costs (P=1): constant (per-call overhead) or growing with its work
    from toolkit.verify._certify_work import plan

    chunks = plan(res[1].lengths.tolist(), None, args.batch_size)
    st = res[1].meta["ranks"][0]
    secs = dict(zip(st["chunk_ids"], st["chunk_seconds"]))
    by: dict[int, list[float]] = {}
    for c in chunks:
        if c.id in secs:
            by.setdefault(len(c.sentences), []).append(secs[c.id])
    vals = np.array(list(secs.values()))
    print(
        f"P=1 seconds per chunk: min {vals.min():.2f}, median {np.median(vals):.2f}, "
        f"max {vals.max():.2f}; mean by sentences in the chunk: "
        + ", ".join(f"{k}: {np.mean(v):.2f} (x{len(v)})" for k, v in sorted(by.items()))
    )
    agree = True
    for n in counts[1:]:
        same = res[1].same_values(res[n])
        delta = np.abs(res[1].values - res[n].values)
        diff = float(np.nanmax(delta))
        print(
            f"P={n} results equal to P=1 (bit for bit): {same}; max |radius difference| "
            f"{diff:.3g} in {int((delta > 0).sum())} pairs (the bisection's resolution is "
            f"{args.tol:g}; a difference means a non-deterministic CUDA op moved a bisection step)"
        )
        agree = agree and (
            np.array_equal(res[1].labels, res[n].labels)
            and res[1].failed_sentences == res[n].failed_sentences
            and np.array_equal(np.isnan(res[1].values), np.isnan(res[n].values))
            and diff <= args.tol
        )
    pairs = int((~np.isnan(res[1].values)).sum())
    fails = " / ".join(str(len(res[n].failures)) for n in counts)
    print(f"pairs certified: {pairs}; failures per P: {fails}")
    print(f"median radius {np.nanmedian(res[1].values):.4f}")
    if not agree:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
