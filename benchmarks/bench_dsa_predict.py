"""DSA prediction (quantized low-rank scores + row-wise top-k mask): kernel vs torch.

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/bench_dsa_predict.py

Methods (the first is the anchor):
  torch-topk   torch on the same int8 codes: float32 matmul of the codes, scale, topk, scatter
               (not tie-exact: topk does not fix which tied key it keeps)
  cuda-kernel  kernels/dsa_predict.cu: integer dot products, radix select and the mask in one
               kernel, without writing the score matrix
GB/s counts the fewest bytes: codes and scales read once, the bool mask written once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, run_cases

from toolkit.attention._dsa_predict import predict_topk_mask


def torch_topk(q_codes, k_codes, k_scale, keep):
    scores = (
        torch.matmul(q_codes.float(), k_codes.float().transpose(-1, -2)) * k_scale[..., None, :]
    )
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(-1, scores.topk(keep, dim=-1).indices, True)


def main() -> None:
    args = parse_args(__doc__)
    if not torch.cuda.is_available():
        sys.exit("bench_dsa_predict: needs a CUDA GPU")
    heads, rank = 16, 32
    lengths = [1024] if args.quick else [1024, 2048, 4096]
    for density in (0.1, 0.25):
        cases = []
        for length in lengths:
            keep = max(1, round(density * length))

            def make(seed, length=length):
                gen = torch.Generator(device="cuda").manual_seed(seed)
                q = torch.randint(-127, 128, (heads, length, rank), device="cuda", generator=gen)
                k = torch.randint(-127, 128, (heads, length, rank), device="cuda", generator=gen)
                s = torch.rand(heads, length, device="cuda", generator=gen) + 0.5
                return q.to(torch.int8), k.to(torch.int8), s

            q, k, s = make(99)
            assert torch.equal(
                predict_topk_mask(q, k, s, keep, backend="cuda"),
                predict_topk_mask(q, k, s, keep, backend="cpu"),
            ), "kernel != ref"
            moved = 2 * heads * length * rank + 4 * heads * length + heads * length * length
            cases.append(Case(f"{heads}x{length}x{length} r={rank} keep={keep}", make, moved))
            cases[-1].keep = keep
        for case in cases:
            keep = case.keep
            methods = {
                "torch-topk": lambda q, k, s, keep=keep: torch_topk(q, k, s, keep),
                "cuda-kernel": lambda q, k, s, keep=keep: predict_topk_mask(
                    q, k, s, keep, backend="cuda"
                ),
            }
            run_cases([case], methods, warmup=args.warmup, reps=args.reps)
        print_table(f"DSA prediction, density {density}", cases, list(methods))


if __name__ == "__main__":
    main()
