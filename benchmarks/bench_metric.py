"""retrieval_topk: the CUDA path against torch's cdist + topk, for retrieval evaluation.

Run on a CUDA machine from the repository root:  PYTHONPATH=. python benchmarks/bench_metric.py

Methods (the first is the anchor):
  cdist-topk    torch.cdist (matrix-product form) + topk over the full N x N distance matrix:
                the usual torch one-liner; materialises N*N floats (17 GB at N = 65536)
  chunked       the same per block of 4096 queries (bounded memory, the fair torch anchor
                when the full matrix would not fit)
  retrieval     toolkit.metric.retrieval_topk(x, k, backend="cuda"): the public call, with its
                input checks (a finiteness check that synchronises)
  cuda-path     the CUDA path alone (_topk_cuda): per chunk of queries (at most 512 MiB of
                Gram products) a cuBLAS GEMM, then the selection kernel of
                kernels/retrieval_topk.cu; never an N x N matrix
Leave-one-out retrieval of N float32 embeddings of dimension D among themselves, k = 8 or 32.
All GEMMs run in IEEE fp32 (torch's default matmul precision; the script prints the flag).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, run_cases

from toolkit.metric import retrieval_topk
from toolkit.metric._retrieval import _topk_cuda


def cdist_topk(x: torch.Tensor, k: int):
    d = torch.cdist(x, x)
    d.fill_diagonal_(float("inf"))
    return d.topk(k, dim=1, largest=False)


def chunked(x: torch.Tensor, k: int, block: int = 4096):
    out = []
    for s in range(0, x.shape[0], block):
        d = torch.cdist(x[s : s + block], x)
        rows = torch.arange(d.shape[0], device=x.device)
        d[rows, s + rows] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out)


def main() -> None:
    args = parse_args(__doc__)
    if not torch.cuda.is_available():
        sys.exit("bench_metric: needs a CUDA GPU")
    print(
        "matmul allow_tf32:",
        torch.backends.cuda.matmul.allow_tf32,
        "(False: IEEE fp32 GEMMs for the anchor and the CUDA path alike)",
    )
    sizes = [(8192, 128)]
    if not args.quick:
        sizes += [(32768, 128), (32768, 512), (65536, 128)]
    for k in (8, 32):
        cases = []
        for n, d in sizes:

            def make(seed, n=n, d=d):
                gen = torch.Generator(device="cuda").manual_seed(seed)
                return (torch.randn(n, d, device="cuda", generator=gen),)

            (x,) = make(99)
            kd, ki = retrieval_topk(x, k, backend="cuda")
            ad, ai = cdist_topk(x, k)
            assert torch.allclose(kd, ad, rtol=1e-3, atol=1e-3), "kernel != anchor distances"
            same = (ki == ai).float().mean().item()
            print(f"N={n} D={d} k={k}: indices equal to the anchor's: {same:.6f}", flush=True)
            del x, kd, ki, ad, ai
            torch.cuda.empty_cache()
            cases.append(Case(f"N={n} D={d} k={k}", make, n * d * 4 + n * k * 12))
        methods = {
            "cdist-topk": lambda x, k=k: cdist_topk(x, k),
            "chunked": lambda x, k=k: chunked(x, k),
            "retrieval": lambda x, k=k: retrieval_topk(x, k, backend="cuda"),
            "cuda-path": lambda x, k=k: _topk_cuda(x, x, k, True),
        }
        run_cases(cases, methods, warmup=args.warmup, reps=args.reps)
        print_table(f"retrieval top-{k}, float32", cases, list(methods))
        print(
            "median ms of one call (CUDA events, 3 rotating inputs); speed-up = anchor ms / "
            "method ms; GB/s = (input + output bytes) / time, a floor, not traffic",
            flush=True,
        )


if __name__ == "__main__":
    main()
