"""DSA prediction (quantized low-rank scores + row-wise top-k): kernels vs torch.

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/bench_dsa_predict.py [--quick]

Methods (the first is the anchor):
  torch-topk     torch on the same int8 codes: float32 matmul of the codes, scale, topk, scatter
                 into a bool mask (not tie-exact: topk does not fix which tied key it keeps)
  rowwise-mask   kernels/dsa_predict.cu `dsa_predict`: one warp a query row, the keys read from
                 L2 for every row, a bool mask out (the kernel before issue 14's rework)
  bits-dp4a-full `dsa_predict_bits` with the candidate filter off (filter=False: the full
                 selection of every row, as before the filter): a block loads a slice's keys
                 into shared memory once for a tile of rows, one warp a row, dp4a scores; the
                 packed int32 bitmask out
  bits-dp4a      the same with the candidate filter (the default): a sampled threshold, one
                 compaction pass, the exact selection on the ~2 keep candidates only
  bits-mma-full  `dsa_predict_bits_mma`, filter off: the scores of 16 (or 8) rows at a time
                 from int8 tensor cores (mma.m16n8k16) into a shared score buffer
  bits-mma       the same with the candidate filter
  bits+unpack    predict_topk_mask on CUDA: predict_topk_bits (bits-mma where it fits, else
                 bits-dp4a), then unpack_bits to the bool mask
A kernel whose shared memory does not fit a case (bits-mma at L 4096, r 32) shows n/a.
Every method's result is checked first: every bits kernel equals the row-wise kernel's mask,
packed, and the row-wise mask of the first slices equals the torch reference (bit for bit).
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
    _bits_launch,
    _bits_plan,
    _mma_launch,
    _mma_plan,
    _predict_cuda_rowwise,
    pack_bits,
    predict_topk_mask,
)


def torch_topk(q_codes, k_codes, k_scale, keep):
    scores = (
        torch.matmul(q_codes.float(), k_codes.float().transpose(-1, -2)) * k_scale[..., None, :]
    )
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.scatter_(-1, scores.topk(keep, dim=-1).indices, True)


def planned(plan_of, launch, filtered: bool):
    """``launch`` with the plan of each input shape computed once, outside the timed calls."""
    plans: dict = {}

    def run(q, k, s, keep):
        key = (tuple(q.shape), tuple(k.shape))
        if key not in plans:
            plans[key] = plan_of(q, k)
        return launch(q, k, s, keep, plans[key], filter=filtered)

    return run


BITS = {  # name: (plan, launch, candidate filter)
    "bits-dp4a-full": (_bits_plan, _bits_launch, False),
    "bits-dp4a": (_bits_plan, _bits_launch, True),
    "bits-mma-full": (_mma_plan, _mma_launch, False),
    "bits-mma": (_mma_plan, _mma_launch, True),
}


def section(title: str, slices: int, rank: int, amp: int, density: float, lengths, args):
    methods = {
        "torch-topk": torch_topk,
        "rowwise-mask": _predict_cuda_rowwise,
        **{name: planned(*spec) for name, spec in BITS.items()},
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
        rowwise = _predict_cuda_rowwise(q, k, s, keep)
        packed = pack_bits(rowwise)
        skipped = []
        for name, (plan_of, launch, filtered) in BITS.items():
            plan = plan_of(q, k)
            if plan is None:
                skipped.append(name)
                continue
            bits = launch(q, k, s, keep, plan, filter=filtered)
            assert torch.equal(bits, packed), f"{name} != row-wise kernel"
        head = slice(0, 2)
        reference = predict_topk_mask(q[head].cpu(), k[head].cpu(), s[head].cpu(), keep)
        assert torch.equal(rowwise[head].cpu(), reference), "row-wise kernel != reference"
        print(
            f"L={length} keep={keep}: every bits kernel == row-wise == reference; plans "
            f"(warps a block, rows a block, blocks a slice[, row group]): dp4a "
            f"{_bits_plan(q, k)}, mma {_mma_plan(q, k)}"
            + (f"; n/a (shared memory does not fit): {', '.join(skipped)}" if skipped else ""),
            flush=True,
        )
        moved = 2 * slices * length * rank + 4 * slices * length + slices * length * length // 8
        label = f"{slices}x{length}x{length} r={rank} keep={keep}"
        case = Case(label, make, moved)
        del q, k, s, rowwise, packed
        run_cases(
            [case],
            {n: f for n, f in methods.items() if n not in skipped},
            warmup=args.warmup,
            reps=args.reps,
        )
        for name in skipped:
            case.results[name] = math.nan
        cases.append(case)
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
