#!/usr/bin/env bash
# Helper dsa2's GPU run (issue 14 item 3: DSA prediction cheap enough for dsa_attention >= 2x
# over unfused attention at sparsity 0.9, L >= 2048).  From the worktree root on the GPU
# machine:  bash gpu_dsa2.sh   (about 3.5 minutes; NVRTC compiles the kernels first).
#
# 1. GPU tests (bit-exact against the torch reference, poisoned outputs):
#    - tests/attention/test_dsa_predict_gpu.py: every bits kernel (dp4a, mma) now runs with the
#      new candidate filter ON and OFF (filter=False is the previous full selection);
#      test_bits_candidate_filter: distributions that stress the filter (all scores equal,
#      zero queries, exact ties, huge outliers, 60 decades, and "overshoot", which forces the
#      fallback that recomputes the row), keep = 1, Lk/10, Lk/4, Lk/4 + 1.
#    - tests/attention/test_dsa_fused_gpu.py: dsa_attention end to end now goes codes ->
#      predict_topk_bits -> fused kernel (no bool mask, no packing): the test checks that no
#      bool mask is built and that the words handed to the kernel equal dsa_mask's pattern
#      packed, bit for bit, and the output against the reference on that pattern.
#    - test_codes_kernel_*: the new one-pass codes kernel (dsa_codes: projection + per-row
#      quantization, which dsa_mask and dsa_attention now use on CUDA) against float64, its
#      bad-row count and the errors, and dsa_mask's pattern with it vs with the torch codes.
#    - the dsa tests of tests/attention/test_attention_gpu.py.
# 2. bench_dsa_predict.py: prediction kernels alone on int8 codes (ms, median).  Rows:
#    bits-*-full = the kernels as before (filter off), bits-dp4a / bits-mma = with the filter.
#    Target: bits-mma <= ~0.15-0.2 ms at 64x2048x2048 (was 1.6 ms).  n/a = kernel does not fit.
# 3. bench_attention.py --sections dsa: fp16 B 4 H 16 d 64, L 512-4096, "vs unfused" = unfused
#    ms / method ms.  dsa0.9 = dsa_attention end to end on the new path (target >= 2x at
#    L >= 2048); dsa0.9-codes = the codes step alone (dsa_codes kernel on Q and K + one host
#    sync); dsa0.9-bits = the prediction alone (codes + predict_topk_bits);
#    dsa0.9-predict = dsa_mask (the same prediction as a bool mask); dsa0.9-fused = the fused
#    kernel alone on a given pattern (so dsa0.9 ~ dsa0.9-bits + dsa0.9-fused).
set -u
cd "$(dirname "$0")"
export PYTHONPATH=.
echo "== GPU tests (dsa prediction, dsa fused, dsa in test_attention_gpu)"
timeout 90 python3 -m pytest -p no:cacheprovider -q --tb=long -m gpu \
    tests/attention/test_dsa_predict_gpu.py tests/attention/test_dsa_fused_gpu.py \
    2>&1 | tail -n 400
echo "== pytest exit: ${PIPESTATUS[0]}"
timeout 30 python3 -m pytest -p no:cacheprovider -q --tb=long -m gpu \
    tests/attention/test_attention_gpu.py -k dsa 2>&1 | tail -n 200
echo "== pytest exit: ${PIPESTATUS[0]}"
echo "== bench_dsa_predict.py"
timeout 50 python3 benchmarks/bench_dsa_predict.py --reps 20
echo "== bench exit: $?"
echo "== bench_attention.py --sections dsa"
timeout 80 python3 benchmarks/bench_attention.py --sections dsa
echo "== bench exit: $?"
