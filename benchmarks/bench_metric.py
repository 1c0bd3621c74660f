"""retrieval_topk: the CUDA kernel against torch's cdist + topk, for retrieval evaluation.

Run on a CUDA machine from the repository root:  PYTHONPATH=. python benchmarks/bench_metric.py

Methods (the first is the anchor):
  cdist-topk    torch.cdist (matrix-product form) + topk over the full N x M distance matrix:
                the usual torch one-liner; materialises N*M floats
  chunked       the same per block of 4096 queries (bounded memory, the fair torch anchor
                when the full matrix would not fit)
  cuda-kernel   retrieval_topk's CUDA path (kernels/retrieval_topk.cu): fused distances and
                row-wise top-k, O(N k) memory
Leave-one-out retrieval of N float32 embeddings of dimension D among themselves, k = 8 or 32.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, run_cases

from toolkit.metric import retrieval_topk


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
    sizes = [(8192, 128)] if args.quick else [(8192, 128), (32768, 128), (32768, 512)]
    tables = []
    for k in (8, 32):
        cases = []
        for n, d in sizes:

            def make(seed, n=n, d=d):
                gen = torch.Generator(device="cuda").manual_seed(seed)
                return (torch.randn(n, d, device="cuda", generator=gen),)

            (x,) = make(99)
            kd, ki = retrieval_topk(x, k, backend="cuda")
            ad, _ = cdist_topk(x, k)
            assert torch.allclose(kd, ad, rtol=1e-3, atol=1e-3), "kernel != anchor distances"
            del x, kd, ki, ad
            cases.append(Case(f"N={n} D={d} k={k}", make, n * d * 4 + n * k * 12))
        methods = {
            "cdist-topk": lambda x, k=k: cdist_topk(x, k),
            "chunked": lambda x, k=k: chunked(x, k),
            "cuda-kernel": lambda x, k=k: retrieval_topk(x, k, backend="cuda"),
        }
        run_cases(cases, methods, warmup=args.warmup, reps=args.reps)
        tables.append(print_table(f"retrieval top-{k}, float32", cases, list(methods)))


if __name__ == "__main__":
    main()
