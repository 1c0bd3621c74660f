"""Sparse attention against dense attention on one card, in one run (issue 14, item 5).

Run on a CUDA machine from the repository root:
    PYTHONPATH=. python benchmarks/bench_attention.py [--quick] [--sections error,mask,...]
    PYTHONPATH=. python benchmarks/bench_attention.py --backward   (forward + backward only)

Sections
  dfss   DFSS's configuration: bf16, head dim 64, 4 heads, batch 48 (24 at L = 4096),
         L = 256 ... 4096
  issue  the configuration of issue 14's table: fp16, batch 4, 16 heads, head dim 64,
         L = 512 ... 4096
  dsa    the DSA rows of the issue configuration (with unfused, SDPA and nm for reference),
         then the fused DSA kernel with and without its tile skip (and with pairs=True) on a
         random and on a structured (local window) pattern, both at density 0.1
  grid   L = 512 ... 16384, head dims 64 and 128, 16 heads, about 16k tokens per batch, bf16
  mask   nm_mask's kernel against a torch.compile'd rank mask and topk, 1M ... 64M fp16
  error  the output error of each fused path against float64 attention with the same pattern
  backward  forward + backward (training step of the attention alone): fp16 and bf16,
         batch 4, 16 heads, head dim 64, L = 512 ... 4096; unfused (bmm -> softmax -> bmm,
         autograd), SDPA flash, nm_attention 2:4 and 1:2 on the fused kernels (forward saving
         the log-sum-exp + nm_attention_bwd.cu), and nm_attention 2:4's reference path
         (autograd through dense scores, nm_mask, masked softmax)

Methods (the first, ``unfused``, is the anchor: bmm -> softmax -> bmm in the input dtype, the
baseline of DFSS's paper):  SDPA with each backend forced (flash, cudnn, efficient, math);
``nm2:4``/``nm1:2`` (nm_attention: the fused kernel); ``nm2:4-ref`` (its reference path:
dense scores, nm_mask, masked softmax); ``dsa0.9`` (dsa_attention at sparsity 0.9, prediction
included: the codes, predict_topk_bits' packed words, the fused kernel; no boolean mask);
``dsa0.9-codes`` (the codes step alone: projection + quantization of Q and K, one
kernel each, kernels/dsa_predict.cu dsa_codes); ``dsa0.9-bits`` (the prediction alone: codes
and predict_topk_bits); ``dsa0.9-predict``
(dsa_mask: the same prediction as a boolean mask); ``dsa0.9-pack`` (pack_keep_bits alone on
a given bool pattern); ``dsa0.9-fused`` (kernels/dsa_attention.cu alone, on a given packed pattern);
``dsa0.9-fused-pairs`` (the same with pairs=True: one exponential a pair of columns);
``dsa0.9-sparse`` (the older gather kernel kernels/dsa_sparse.cu alone, on a given bool
pattern); ``dsa0.9-ref`` (the reference on that pattern).  TFLOP/s count dense attention's
4 B H L^2 d FLOPs for every method; GB/s counts reading Q, K, V and writing O once; peak is
the extra memory one call allocates.  Times are medians over rotating fresh inputs (CUDA
events around streams of back-to-back calls, see ``time_ms``), fewer repetitions on big sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from toolkit._checks import make_generator
from toolkit.attention import dsa_attention, dsa_mask, nm_attention, nm_mask
from toolkit.attention._fused import (
    fused_dsa_attention,
    fused_nm_attention,
    pack_keep_bits,
    sparse_dsa_attention,
)
from toolkit.attention.dsa import _codes, _dsa_attention_op, _predict_bits, dsa_projection
from toolkit.attention.sparse import _nm_attention_op

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover
    SDPBackend = sdpa_kernel = None


def time_ms(fn: Callable[[tuple], object], inputs: list[tuple], budget_ms: float = 60.0):
    """Median ms per call of fn over rotating inputs, as a stream of back-to-back calls.

    Each timed sample is ``inner`` consecutive calls between two CUDA events (``inner`` sized
    so that a sample lasts about 1 ms), as a model runs them: the host's launch overhead of one
    call overlaps the previous call's GPU work, so a sample measures the GPU's throughput unless
    the host is slower (then it measures the host: see the host overhead table).
    """
    fn(inputs[0])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(inputs[1 % len(inputs)])
    torch.cuda.synchronize()
    first = max((time.perf_counter() - t0) * 1e3, 1e-3)
    inner = int(min(50, max(1, 1.0 / first)))
    reps = int(min(30, max(3, budget_ms / (first * inner))))
    for i in range(min(3, reps) * inner):
        fn(inputs[i % len(inputs)])
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(inner):
            fn(inputs[i % len(inputs)])
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / inner)
    return statistics.median(times)


def peak_mb(fn: Callable[[tuple], object], args: tuple) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn(args)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak / 2**20


def unfused(a: tuple) -> torch.Tensor:
    q, k, v = a[:3]
    s = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    return torch.matmul(torch.softmax(s, dim=-1), v)


def sdpa(backend):
    def run(a: tuple) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(*a[:3])

    return run


_PROJ = dsa_projection(64, 16)  # dsa_attention's default projection at head dim 64


def attention_methods(big: bool) -> dict[str, Callable[[tuple], object]]:
    methods: dict[str, Callable[[tuple], object]] = {"unfused": unfused}
    if sdpa_kernel is not None:
        methods["sdpa-flash"] = sdpa(SDPBackend.FLASH_ATTENTION)
        methods["sdpa-cudnn"] = sdpa(SDPBackend.CUDNN_ATTENTION)
        methods["sdpa-efficient"] = sdpa(SDPBackend.EFFICIENT_ATTENTION)
        if not big:
            methods["sdpa-math"] = sdpa(SDPBackend.MATH)
    methods["nm2:4"] = lambda a: nm_attention(*a[:3], n=2, m=4)
    methods["nm1:2"] = lambda a: nm_attention(*a[:3], n=1, m=2)
    methods["dsa0.9"] = lambda a: dsa_attention(*a[:3], sparsity=0.9)
    methods["dsa0.9-codes"] = lambda a: _codes(a[0], a[1], _PROJ, 4)
    methods["dsa0.9-bits"] = lambda a: _predict_bits(
        a[0], a[1], 0.1, 16, 4, make_generator(None, None, default_seed=0)
    )
    methods["dsa0.9-predict"] = lambda a: dsa_mask(a[0], a[1], sparsity=0.9)
    methods["dsa0.9-pack"] = lambda a: pack_keep_bits(a[3])
    methods["dsa0.9-fused"] = lambda a: fused_dsa_attention(*a[:3], a[4], a[0].shape[-1] ** -0.5)
    methods["dsa0.9-fused-pairs"] = lambda a: fused_dsa_attention(
        *a[:3], a[4], a[0].shape[-1] ** -0.5, pairs=True
    )
    methods["dsa0.9-sparse"] = lambda a: sparse_dsa_attention(*a[:3], a[3], a[0].shape[-1] ** -0.5)
    if not big:
        methods["nm2:4-ref"] = lambda a: _nm_attention_op.reference(
            *a[:3], 2, 4, a[0].shape[-1] ** -0.5, None, False
        )
        methods["dsa0.9-ref"] = lambda a: _dsa_attention_op.reference(
            *a[:3], a[3], a[0].shape[-1] ** -0.5, None, False
        )
    return methods


#: The methods of the dsa section (the anchor first).
DSA_ROWS = (
    "unfused",
    "sdpa-flash",
    "sdpa-cudnn",
    "nm2:4",
    "nm1:2",
    "dsa0.9",
    "dsa0.9-codes",
    "dsa0.9-bits",
    "dsa0.9-predict",
    "dsa0.9-pack",
    "dsa0.9-fused",
    "dsa0.9-fused-pairs",
    "dsa0.9-sparse",
)


def attention_table(
    title: str,
    cases: list[tuple[int, int, int, int]],
    dtype,
    rows: list[str],
    only: tuple[str, ...] | None = None,
):
    card = torch.cuda.get_device_name()
    print(
        f"\n### {title}\n\ncard: {card}; date: {datetime.date.today()}; "
        f"torch {torch.__version__}; {str(dtype)[6:]}\n",
        flush=True,
    )
    print("| B | H | L | d | method | median ms | TFLOP/s | GB/s | peak MB | vs unfused |")
    print("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for b, h, L, d in cases:
        big = L > 4096

        def make(seed, b=b, h=h, L=L, d=d):
            g = torch.Generator(device="cuda").manual_seed(seed)
            q, k, v = (
                torch.randn(b, h, L, d, device="cuda", dtype=dtype, generator=g) for _ in range(3)
            )
            keep = dsa_mask(q, k, sparsity=0.9)
            return q, k, v, keep, pack_keep_bits(keep)

        inputs = [make(s) for s in range(2)]
        flops = 4 * b * h * L * L * d
        nbytes = 4 * b * h * L * d * dtype.itemsize
        anchor = None
        for name, fn in attention_methods(big).items():
            if only is not None and name not in only:
                continue
            try:
                ms = time_ms(fn, inputs, budget_ms=40.0 if not big else 25.0)
                mb = peak_mb(fn, inputs[0])
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                print(
                    f"| {b} | {h} | {L} | {d} | {name} | n/a ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0][:60]}) | | | | |",
                    flush=True,
                )
                torch.cuda.empty_cache()
                continue
            anchor = ms if name == "unfused" else anchor
            ratio = f"{anchor / ms:.2f}x" if anchor else "-"
            line = (
                f"| {b} | {h} | {L} | {d} | {name} | {ms:.4f} | {flops / ms / 1e9:.1f} | "
                f"{nbytes / ms / 1e6:.0f} | {mb:.0f} | {ratio} |"
            )
            print(line, flush=True)
            rows.append(line)
        del inputs
        torch.cuda.empty_cache()


def rank_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """For each element, count the group members that beat it (larger, or equal at a lower
    index); keep it when fewer than n do (nm_mask's rule, for inputs without NaN)."""
    g = scores.view(*scores.shape[:-1], -1, m)
    a, b = g.unsqueeze(-1), g.unsqueeze(-2)  # entry i, entry j
    idx = torch.arange(m, device=scores.device)
    beats = (b > a) | ((b == a) & (idx[None, :] < idx[:, None]))
    return (beats.sum(-1) < n).view(scores.shape)


def topk_mask_groups(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    g = scores.view(*scores.shape[:-1], -1, m)
    mask = torch.zeros(g.shape, dtype=torch.bool, device=scores.device)
    mask.scatter_(-1, g.topk(n, dim=-1).indices, True)
    return mask.view(scores.shape)


def host_overhead() -> None:
    """Host microseconds per call (no synchronisation): the Python cost of a launch."""
    s = torch.randn(256, 4096, device="cuda", dtype=torch.float16)
    q = torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.float16)
    calls = {
        "nm_mask 2:4 (1M)": lambda: nm_mask(s, 2, 4),
        "nm_attention 2:4 (fused)": lambda: nm_attention(q, q, q, 2, 4),
        "fused_nm_attention": lambda: fused_nm_attention(q, q, q, 2, 4, 0.125),
        "torch.empty": lambda: torch.empty(s.shape, dtype=torch.bool, device="cuda"),
    }
    print("\n### host overhead per call (us, median of 5 x 200 calls)\n")
    for name, fn in calls.items():
        fn()
        torch.cuda.synchronize()
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(200):
                fn()
            runs.append((time.perf_counter() - t0) / 200 * 1e6)
            torch.cuda.synchronize()
        print(f"- {name}: {statistics.median(runs):.1f} us", flush=True)


def compiled_rank_mask(n: int, m: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The anchor: ``rank_mask`` compiled for one ``n:m`` with static shapes.  (``dynamic=True``
    made ``m`` symbolic and the group comparison generic: about 0.1 TB/s instead of ~2 TB/s.)"""
    return torch.compile(functools.partial(rank_mask, n=n, m=m), dynamic=False, fullgraph=True)


def mask_table(quick: bool) -> None:
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    print(
        f"\n### nm_mask, fp16\n\ncard: {torch.cuda.get_device_name()}; "
        f"date: {datetime.date.today()}; torch {torch.__version__}\n"
    )
    print("| elements | n:m | method | median ms | GB/s | vs compiled |")
    print("| ---: | --- | --- | ---: | ---: | ---: |")
    sizes = [1 << 20, 1 << 26] if quick else [1 << 20, 1 << 22, 1 << 24, 1 << 26]
    for n, m in ((2, 4), (1, 2), (8, 32)):
        for numel in sizes:

            def make(seed, numel=numel):
                g = torch.Generator(device="cuda").manual_seed(seed)
                return (
                    torch.randn(
                        numel // 4096, 4096, device="cuda", dtype=torch.float16, generator=g
                    ),
                )

            inputs = [make(s) for s in range(3)]
            s0 = inputs[0][0]
            compiled = compiled_rank_mask(n, m)
            ours = nm_mask(s0, n, m)
            assert torch.equal(ours, compiled(s0)), "compiled rank mask != nm_mask"
            assert torch.equal(ours, nm_mask(s0, n, m, backend="cpu")), "kernel != reference"
            methods = {
                "compiled-rank": lambda a, c=compiled: c(a[0]),
                "topk": lambda a, n=n, m=m: topk_mask_groups(a[0], n, m),
                "nm_mask-cuda": lambda a, n=n, m=m: nm_mask(a[0], n, m),
            }
            anchor = None
            for name, fn in methods.items():
                ms = time_ms(fn, inputs, budget_ms=30.0)
                anchor = anchor or ms
                gbs = numel * 3 / ms / 1e6
                print(
                    f"| {numel >> 20}M | {n}:{m} | {name} | {ms:.4f} | {gbs:.0f} | "
                    f"{anchor / ms:.2f}x |",
                    flush=True,
                )
            del inputs, s0, ours
            torch.cuda.empty_cache()


def error_table() -> None:
    """Output error of the fused paths against float64 attention with the same pattern."""
    print("\n### output error vs float64 attention with the same pattern\n")
    print("| path | dtype | L | d | max abs err | rel Frobenius err | pattern agreement |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for dtype in (torch.float16, torch.bfloat16):
        for L, d in ((1024, 64), (1024, 128)):
            g = torch.Generator(device="cuda").manual_seed(7)
            q, k, v = (
                torch.randn(1, 4, L, d, device="cuda", dtype=dtype, generator=g) for _ in range(3)
            )
            scale = d**-0.5
            q64, k64, v64 = q.double(), k.double(), v.double()
            s64 = torch.matmul(q64, k64.transpose(-1, -2)) * scale
            s32 = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
            for n, m in ((2, 4), (1, 2)):
                keep64 = nm_mask(s64, n, m)
                agree = (keep64 == nm_mask(s32, n, m)).float().mean().item()
                ref = torch.matmul(torch.softmax(s64.masked_fill(~keep64, -math.inf), -1), v64)
                out = fused_nm_attention(q, k, v, n, m, scale).double()
                err = (out - ref).norm() / ref.norm()
                print(
                    f"| nm{n}:{m} fused | {str(dtype)[6:]} | {L} | {d} | "
                    f"{(out - ref).abs().max().item():.2e} | {err.item():.2e} | "
                    f"{agree:.6f} (fp32 scores vs fp64) |",
                    flush=True,
                )
            keep = dsa_mask(q, k, sparsity=0.9)
            ref = torch.matmul(torch.softmax(s64.masked_fill(~keep, -math.inf), -1), v64)
            outs = {
                "sparse": sparse_dsa_attention(q, k, v, keep, scale),
                "fused": fused_dsa_attention(q, k, v, pack_keep_bits(keep), scale),
            }
            for path, out in outs.items():
                out = out.double()
                err = (out - ref).norm() / ref.norm()
                print(
                    f"| dsa0.9 {path} | {str(dtype)[6:]} | {L} | {d} | "
                    f"{(out - ref).abs().max().item():.2e} | {err.item():.2e} | same pattern |",
                    flush=True,
                )


def dsa_skip_table(quick: bool) -> None:
    """The fused DSA kernel alone with and without its tile skip, on a random pattern and on a
    local window (|i - j| < density * L / 2), both at density ~0.1, issue configuration."""
    print(
        f"\n### fused DSA kernel: tile skip on random and structured patterns, float16, "
        f"B 4, H 16, d 64\n\ncard: {torch.cuda.get_device_name()}; "
        f"date: {datetime.date.today()}; torch {torch.__version__}.  ms: median of the kernel "
        "alone (fused_dsa_attention on a packed pattern); density = kept fraction.\n"
    )
    print("| L | pattern | density | skip ms | no-skip ms | no-skip / skip | skip+pairs ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for L in [512, 2048] if quick else [512, 1024, 2048, 4096]:
        g = torch.Generator(device="cuda").manual_seed(L)
        q, k, v = (
            torch.randn(4, 16, L, 64, device="cuda", dtype=torch.float16, generator=g)
            for _ in range(3)
        )
        i = torch.arange(L, device="cuda")
        patterns = {
            "random": torch.rand(4, 16, L, L, device="cuda", generator=g) < 0.1,
            "window": ((i[:, None] - i[None, :]).abs() < 0.05 * L).expand(4, 16, L, L),
        }
        for pname, keep in patterns.items():
            bits = pack_keep_bits(keep)
            density = keep.sum().item() / keep.numel()  # no float copy of the expanded window
            ms = [
                time_ms(
                    lambda a, skip=skip, pairs=pairs: fused_dsa_attention(
                        *a, 0.125, skip=skip, pairs=pairs
                    ),
                    [(q, k, v, bits)],
                    budget_ms=30.0,
                )
                for skip, pairs in ((True, False), (False, False), (True, True))
            ]
            print(
                f"| {L} | {pname} | {density:.3f} | {ms[0]:.4f} | {ms[1]:.4f} | "
                f"{ms[1] / ms[0]:.2f}x | {ms[2]:.4f} |",
                flush=True,
            )
            del keep, bits
        del q, k, v, patterns
        torch.cuda.empty_cache()


def backward_table(quick: bool) -> None:
    """Median ms of forward + backward (dq, dk, dv by torch.autograd.grad, dO given)."""
    card = torch.cuda.get_device_name()
    methods: dict[str, Callable[..., torch.Tensor]] = {
        "unfused": lambda q, k, v: unfused((q, k, v)),
    }
    if sdpa_kernel is not None:
        methods["sdpa-flash"] = lambda q, k, v: sdpa(SDPBackend.FLASH_ATTENTION)((q, k, v))
    methods["nm2:4"] = lambda q, k, v: nm_attention(q, k, v, n=2, m=4)
    methods["nm1:2"] = lambda q, k, v: nm_attention(q, k, v, n=1, m=2)
    methods["nm2:4-ref"] = lambda q, k, v: _nm_attention_op.reference(
        q, k, v, 2, 4, q.shape[-1] ** -0.5, None, False
    )
    for dtype in (torch.float16, torch.bfloat16):
        print(
            f"\n### forward + backward, {str(dtype)[6:]}, B 4, H 16, d 64\n\ncard: {card}; "
            f"date: {datetime.date.today()}; torch {torch.__version__}.  ms: median of one "
            "forward and one backward (torch.autograd.grad of q, k, v); TFLOP/s counts "
            "dense attention's 4 B H L^2 d forward FLOPs x 3.5 (forward + backward, "
            "FlashAttention-2's convention) for every method.\n",
            flush=True,
        )
        print("| L | method | median ms | TFLOP/s | peak MB | vs unfused | vs sdpa-flash |")
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
        b, h, d = 4, 16, 64
        for L in [512, 2048] if quick else [512, 1024, 2048, 4096]:

            def make(seed, L=L, dtype=dtype):
                g = torch.Generator(device="cuda").manual_seed(seed)
                q, k, v, do = (
                    torch.randn(4, 16, L, 64, device="cuda", dtype=dtype, generator=g)
                    for _ in range(4)
                )
                return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), do

            inputs = [make(s) for s in range(2)]
            flops = 3.5 * 4 * b * h * L * L * d
            base: dict[str, float] = {}
            for name, method in methods.items():
                if name.endswith("-ref") and L > 2048:
                    continue

                def step(a, method=method):
                    q, k, v, do = a
                    return torch.autograd.grad(method(q, k, v), (q, k, v), do)

                try:
                    ms = time_ms(step, inputs, budget_ms=40.0)
                    mb = peak_mb(step, inputs[0])
                except (RuntimeError, torch.OutOfMemoryError) as exc:
                    print(f"| {L} | {name} | n/a ({type(exc).__name__}) | | | | |", flush=True)
                    torch.cuda.empty_cache()
                    continue
                base.setdefault(name, ms)
                ratios = [
                    f"{base[a] / ms:.2f}x" if a in base else "-" for a in ("unfused", "sdpa-flash")
                ]
                print(
                    f"| {L} | {name} | {ms:.4f} | {flops / ms / 1e9:.1f} | {mb:.0f} | "
                    f"{ratios[0]} | {ratios[1]} |",
                    flush=True,
                )
            del inputs
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    parser.add_argument("--sections", default="error,mask,issue,dfss,grid,backward")
    parser.add_argument(
        "--backward", action="store_true", help="only the forward + backward section"
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_attention: needs a CUDA GPU")
    sections = ["backward"] if args.backward else args.sections.split(",")
    rows: list[str] = []
    start = time.perf_counter()
    if "error" in sections:
        error_table()
    if "mask" in sections:
        host_overhead()
        mask_table(args.quick)
    if "issue" in sections:
        Ls = [512, 2048] if args.quick else [512, 1024, 2048, 4096]
        attention_table("issue 14 configuration", [(4, 16, L, 64) for L in Ls], torch.float16, rows)
    if "dsa" in sections:
        Ls = [512, 2048] if args.quick else [512, 1024, 2048, 4096]
        cases = [(4, 16, L, 64) for L in Ls]
        attention_table(
            "DSA at sparsity 0.9, issue 14 configuration", cases, torch.float16, rows, DSA_ROWS
        )
        dsa_skip_table(args.quick)
    if "dfss" in sections:
        Ls = [256, 1024, 4096] if args.quick else [256, 512, 1024, 2048, 4096]
        cases = [(24 if L == 4096 else 48, 4, L, 64) for L in Ls]
        attention_table("DFSS configuration", cases, torch.bfloat16, rows)
    if "grid" in sections:
        Ls = [512, 4096, 16384] if args.quick else [512, 1024, 2048, 4096, 8192, 16384]
        cases = [(max(1, 16384 // L), 16, L, d) for d in (64, 128) for L in Ls]
        attention_table("larger grid, ~16k tokens per batch", cases, torch.bfloat16, rows)
    if "backward" in sections:
        backward_table(args.quick)
    print(f"\ntotal {time.perf_counter() - start:.0f} s", flush=True)
    with contextlib.suppress(Exception):
        print(torch.cuda.get_device_properties(0))


if __name__ == "__main__":
    main()
