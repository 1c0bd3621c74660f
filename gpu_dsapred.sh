#!/usr/bin/env bash
# GPU work of helper dsapred (issue 14 item 3, the prediction half): run from the worktree root
# on the GPU machine.  About 1-2 minutes; every step has its own timeout.
#   1. GPU tests of the prediction kernels: the row-wise bool-mask kernel (dsa_predict), the
#      new bits kernels (dsa_predict_bits: dp4a; dsa_predict_bits_mma: tensor cores), the
#      dispatch predict_topk_bits and predict_topk_mask on CUDA (bits + unpack_bits), each
#      bit for bit against the torch reference, into poisoned outputs.  A failure names the
#      kernel ("bits dp4a" / "bits mma" / "bits dispatch" / the mask function).
#   2. The dsa_mask / dsa_attention GPU tests that go through predict_topk_mask.
#   3. benchmarks/bench_dsa_predict.py (its docstring names the methods): median ms of each
#      method (CUDA events, 10 warm-ups, 50 reps over 3 rotating inputs); the first table is
#      the issue configuration (R = B 4 x H 16 = 64 slices, r 16, 4-bit codes, keep
#      ceil(0.1 L)).  The budget for the bits kernel there is well under 0.3 ms at L 2048.
cd "$(dirname "$0")"
export PYTHONPATH=.
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
git log --oneline -1 2>/dev/null || true
echo "== 0. compile the module (NVRTC) and show the bits kernel's plan"
timeout 120 python3 - <<'PY'
import time, torch
from toolkit.attention._dsa_predict import _bits_plan, _mma_plan, predict_topk_bits
q = torch.zeros(64, 2048, 16, dtype=torch.int8, device="cuda")
t = time.perf_counter()
predict_topk_bits(q, q, torch.ones(64, 2048, device="cuda"), 205)
torch.cuda.synchronize()
print(f"first call (compile + run): {time.perf_counter() - t:.1f} s; plans: "
      f"dp4a {_bits_plan(q, q)}, mma {_mma_plan(q, q)}")
PY
echo "== 1. GPU tests: tests/attention/test_dsa_predict_gpu.py"
timeout 150 python3 -m pytest -p no:cacheprovider -q -m gpu tests/attention/test_dsa_predict_gpu.py 2>&1 | tail -n 400
echo "== 2. GPU tests: dsa tests in tests/attention/test_attention_gpu.py"
timeout 60 python3 -m pytest -p no:cacheprovider -q -m gpu tests/attention/test_attention_gpu.py -k dsa 2>&1 | tail -n 200
echo "== 3. benchmark: benchmarks/bench_dsa_predict.py"
timeout 150 python3 benchmarks/bench_dsa_predict.py
echo "== done"
