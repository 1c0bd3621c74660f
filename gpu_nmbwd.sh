#!/usr/bin/env bash
# GPU hand-over of the nmbwd helper (issue 14 item 2: backward of the fused N:M attention).
# Run from the worktree root on the device; about 2-3 minutes.
#  0) compiles the kernel instances the tests and the benchmark need, 12 processes in
#     parallel, into CuPy's on-disk cache (NVRTC takes seconds per backward instance; the
#     tests then load them from the cache);
#  1) GPU tests: tests/attention/test_fused_gpu.py (forward, nm_mask, DSA; must stay green
#     after the refactor into nm_attention_tile.cuh) and tests/attention/test_fused_grad_gpu.py
#     (the backward: dq, dk, dv against float64 autograd of the reference path; masks, dead
#     and NaN rows, tails, Lq != Lk, head dims 16/32/64/128, 1:1 ... 9:32; the backward uses
#     the forward's exact kept set; finetune_demo on CUDA takes the fused kernels);
#  2) benchmark: forward + backward, fp16 and bf16, B 4, H 16, d 64, L 512..4096: median ms
#     of one forward + one backward (torch.autograd.grad of q, k, v), speed-ups over unfused
#     (bmm -> softmax -> bmm with autograd) and over SDPA's flash backend.
set -u
export PYTHONPATH=.
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"

echo "=== 0. compile the N:M attention kernel instances (parallel, into CuPy's cache) ==="
timeout 100 python3 - <<'EOF'
import multiprocessing as mp
import time


def build(job):
    module, expr = job
    import torch  # noqa: F401

    from toolkit._kernels import load_module

    t0 = time.perf_counter()
    try:
        load_module(module, (expr,), device=0)
        return f"ok   {expr} {time.perf_counter() - t0:.1f} s"
    except Exception as exc:  # reported, the tests then show it in full
        return f"FAIL {expr}: {str(exc)[:2000]}"


if __name__ == "__main__":
    combos = [(64, 4), (64, 2), (128, 4), (64, 8), (128, 16), (64, 32), (64, 1), (128, 2),
              (16, 4), (32, 2)]
    jobs = []
    for t in ("tk_half", "tk_bfloat16"):
        for d, m in combos:
            jobs.append(("nm_attention_bwd", f"nm_attention_bwd<{t}, {d}, {m}>"))
            jobs.append(("nm_attention", f"nm_attention_fwd<{t}, {d}, {m}>"))
    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(12) as pool:  # the parent never touches CUDA
        for line in pool.imap_unordered(build, jobs):
            print(line, flush=True)
    print(f"compiled {len(jobs)} instances in {time.perf_counter() - t0:.0f} s")
EOF
echo "compile exit status: $?"

echo "=== 1. GPU tests: test_fused_gpu.py + test_fused_grad_gpu.py ==="
timeout 150 python3 -m pytest -p no:cacheprovider -q -m gpu \
    tests/attention/test_fused_gpu.py tests/attention/test_fused_grad_gpu.py \
    -rfE --tb=long --durations=8 2>&1 | tail -n 250
echo "pytest exit status: ${PIPESTATUS[0]}"

echo "=== 2. benchmark: benchmarks/bench_attention.py --backward ==="
timeout 90 python3 benchmarks/bench_attention.py --backward 2>&1
echo "benchmark exit status: $?"
