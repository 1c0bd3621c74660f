#!/usr/bin/env bash
# Helper dsafused's GPU run (issue 14 item 3: the fused DSA attention forward).  From the
# worktree root on the GPU machine:  bash gpu_dsafused.sh   (about 3-4 minutes; most of the
# first minute is NVRTC compiling the kernel instances the tests use).
#
# 1. GPU tests: the fused DSA kernel (kernels/dsa_attention.cu) against float64 attention with
#    the same pattern (tails, dead rows, fp16/bf16, head dims 16-128, densities 0.05-0.5,
#    structured pattern with and without the tile skip, poisoned outputs), pack_keep_bits'
#    kernels bit for bit, dsa_attention end to end against its reference path; then the fused
#    N:M forward's exact-score tests (fp16; 2:4 and 1:2 at d 64, 2:4 at d 128), as its tile
#    loop moved into the shared header.
# 2. bench_attention.py --sections error,dsa:
#    - "output error" table: rel. Frobenius / max abs error of each fused path vs float64
#      attention with the same pattern (rows "dsa0.9 fused" are the new kernel).
#    - "DSA at sparsity 0.9" table (fp16, B 4, H 16, d 64, L 512-4096): median ms per call,
#      "vs unfused" = unfused ms / method ms (target: dsa0.9 >= 2x at L >= 2048).
#      dsa0.9 = dsa_attention end to end (prediction + pack + fused kernel);
#      dsa0.9-predict = dsa_mask alone; dsa0.9-pack = pack_keep_bits alone;
#      dsa0.9-fused = the fused kernel alone on a given packed pattern;
#      dsa0.9-sparse = the old gather kernel alone; nm2:4 / nm1:2 = the fused N:M forward
#      (compare with benchmarks/RESULTS.md: 0.0580/0.1701/0.6318/2.3167 ms for nm2:4 and
#      0.0538/0.1137/0.4099/1.5319 ms for nm1:2 at L 512/1024/2048/4096 before the refactor).
#      dsa0.9-fused-pairs = the fused kernel with pairs=True (one exponential a pair of columns
#      unless both kept): if it beats dsa0.9-fused, it should become dsa_attention's default.
#    - "tile skip" table: the fused kernel with and without the per-warp tile skip on a random
#      pattern (the skip never fires: its cost) and on a local window (it fires on most tiles),
#      and skip+pairs.
set -u
cd "$(dirname "$0")"
export PYTHONPATH=.
echo "== GPU tests (dsa fused + nm fused fp16 exact-score tests)"
timeout 125 python3 -m pytest -p no:cacheprovider -q --tb=short -m gpu \
    tests/attention/test_dsa_fused_gpu.py \
    "tests/attention/test_fused_gpu.py::test_fused_exact_scores_match_float64" \
    -k "dsa or pack or (dtype0 and (lead0 or lead1 or lead2))" 2>&1 | tail -n 150
echo "== pytest exit: ${PIPESTATUS[0]}"
echo "== bench_attention.py --sections error,dsa"
timeout 105 python3 benchmarks/bench_attention.py --sections error,dsa
echo "== bench exit: $?"
