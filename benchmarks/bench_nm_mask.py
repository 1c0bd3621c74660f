"""nm_mask: the CUDA kernel against the best torch-only ways to compute an N:M mask.

Run on a CUDA machine from the repository root:  PYTHONPATH=. python benchmarks/bench_nm_mask.py

Methods (the first is the anchor):
  torch-topk   topk over each group + scatter: the fastest torch-only way; it does not fix
               which of tied entries it keeps, so it can differ from nm_mask on ties
  torch-sort   the reference path (stable sort + rank scatter): the same mask bit for bit
  cuda-kernel  nm_mask's CUDA path (kernels/nm_prune.cu)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, run_cases

from toolkit.attention import nm_mask


def torch_topk(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    grouped = scores.view(*scores.shape[:-1], -1, m)
    mask = torch.zeros(grouped.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(-1, grouped.topk(n, dim=-1).indices, True)
    return mask.view(scores.shape)


def main() -> None:
    args = parse_args(__doc__)
    if not torch.cuda.is_available():
        sys.exit("bench_nm_mask: needs a CUDA GPU")
    sizes = [(16, 1 << 16)] if args.quick else [(16, 1 << 16), (128, 1 << 16), (1024, 1 << 16)]
    tables = []
    for dtype in (torch.float16, torch.float32):
        for n, m in ((2, 4), (1, 2), (8, 32)):
            cases = []
            for rows, cols in sizes:

                def make(seed, rows=rows, cols=cols, dtype=dtype):
                    gen = torch.Generator(device="cuda").manual_seed(seed)
                    return (torch.randn(rows, cols, device="cuda", dtype=dtype, generator=gen),)

                numel = rows * cols
                label = f"{numel / 2**20:.0f}M {str(dtype)[6:]} {n}:{m}"
                (scores,) = make(99)
                assert torch.equal(
                    nm_mask(scores, n, m, backend="cuda"), nm_mask(scores, n, m, backend="cpu")
                ), "kernel != reference"
                del scores
                cases.append(Case(label, make, numel * (dtype.itemsize + 1)))
            methods = {
                "torch-topk": lambda s, n=n, m=m: torch_topk(s, n, m),
                "torch-sort": lambda s, n=n, m=m: nm_mask(s, n, m, backend="cpu"),
                "cuda-kernel": lambda s, n=n, m=m: nm_mask(s, n, m, backend="cuda"),
            }
            run_cases(cases, methods, warmup=args.warmup, reps=args.reps)
            tables.append(print_table(f"nm_mask {n}:{m} {str(dtype)[6:]}", cases, list(methods)))


if __name__ == "__main__":
    main()
