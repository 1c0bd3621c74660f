"""DSA prediction (quantized low-rank scores + row-wise top-k): kernels vs torch.

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/bench_dsa_predict.py [--quick]

Methods (the first is the anchor):
  torch-topk     torch on the same int8 codes: float32 matmul of the codes, scale, topk, scatter
                 into a bool mask (not tie-exact: topk does not fix which tied key it keeps)
  rowwise-mask   kernels/dsa_predict.cu `dsa_predict`: one warp a query row, the keys read from
                 L2 for every row, a bool mask out (the kernel before issue 14's rework)
  bits-kernel    `dsa_predict_bits` (predict_topk_bits): a block loads a slice's keys into
                 shared memory once for a tile of rows; the packed int32 bitmask out
  bits+unpack    predict_topk_mask on CUDA: bits-kernel, then unpack_bits to the bool mask
Every method's result is checked first: the bits equal the row-wise kernel's mask, packed,
and the row-wise mask of the first slices equals the torch reference (bit for bit).
GB/s counts the fewest bytes: codes and scales read once, the packed bitmask written once.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, parse_args, print_table, run_cases

from toolkit.attention._dsa_predict import (
    _bits_plan,
    _predict_cuda_rowwise,
    pack_bits,
    predict_topk_bits,
    predict_topk_mask,
)


def torch_topk(q_codes, k_codes, k_scale, keep):
    scores = (
        torch.matmul(q_codes.float(), k_codes.float().transpose(-1, -2)) * k_scale[..., None, :]
    )
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(-1, scores.topk(keep, dim=-1).indices, True)


def section(title: str, slices: int, rank: int, amp: int, density: float, lengths, args):
    methods = {
        "torch-topk": torch_topk,
        "rowwise-mask": _predict_cuda_rowwise,
        "bits-kernel": lambda q, k, s, keep: predict_topk_bits(q, k, s, keep, backend="cuda"),
        "bits+unpack": lambda q, k, s, keep: predict_topk_mask(q, k, s, keep, backend="cuda"),
    }
    cases = []
    for length in lengths:
        keep = math.ceil(density * length)

        def make(seed, length=length, keep=keep):
            gen = torch.Generator(device="cuda").manual_seed(seed)
            shape = (slices, length, rank)
            q = torch.randint(-amp, amp + 1, shape, device="cuda", generator=gen)
            k = torch.randint(-amp, amp + 1, shape, device="cuda", generator=gen)
            s = torch.rand(slices, length, device="cuda", generator=gen) + 0.5
            return q.to(torch.int8), k.to(torch.int8), s, keep

        q, k, s, _ = make(99)
        bits = predict_topk_bits(q, k, s, keep, backend="cuda")
        rowwise = _predict_cuda_rowwise(q, k, s, keep)
        assert torch.equal(bits, pack_bits(rowwise)), "bits kernel != row-wise kernel"
        head = slice(0, 2)
        reference = predict_topk_mask(q[head].cpu(), k[head].cpu(), s[head].cpu(), keep)
        assert torch.equal(rowwise[head].cpu(), reference), "row-wise kernel != reference"
        plan = _bits_plan(q, k)
        print(
            f"L={length} keep={keep}: bits == row-wise == reference; bits-kernel plan "
            f"(warps a block, rows a block, blocks a slice) = {plan}",
            flush=True,
        )
        moved = 2 * slices * length * rank + 4 * slices * length + slices * length * length // 8
        label = f"{slices}x{length}x{length} r={rank} keep={keep}"
        cases.append(Case(label, make, moved))
        del q, k, s, bits, rowwise
    run_cases(cases, methods, warmup=args.warmup, reps=args.reps)
    print_table(title, cases, list(methods))


def main() -> None:
    args = parse_args(__doc__)
    if not torch.cuda.is_available():
        sys.exit("bench_dsa_predict: needs a CUDA GPU")
    lengths = [1024] if args.quick else [1024, 2048, 4096]
    # Issue 14's configuration: B 4 x H 16 slices, rank 16, 4-bit codes, sparsity 0.9.
    section(
        "DSA prediction, issue 14 configuration (R 64, r 16, 4-bit codes, keep ceil(0.1 L))",
        64,
        16,
        7,
        0.1,
        lengths,
        args,
    )
    # The earlier table's configuration (benchmarks/RESULTS.md): 16 slices, rank 32, 8-bit.
    section(
        "DSA prediction, R 16, r 32, 8-bit codes, keep ceil(0.1 L)",
        16,
        32,
        127,
        0.1,
        lengths,
        args,
    )


if __name__ == "__main__":
    main()
