#!/usr/bin/env bash
# GPU hand-over of the retrieval helper (issue 12 item 6): run from the worktree root on the
# device.  1) the GPU tests of retrieval_topk's CUDA path against the reference (failures in
# full); 2) the benchmark against torch.cdist + topk (markdown tables: median ms per call and
# speed-up over the anchor, N = 8192..65536, D = 128/512, k = 8/32, float32).
set -u
export PYTHONPATH=.
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"
echo "=== 1. GPU tests: tests/metric/test_retrieval_gpu.py ==="
timeout 100 python3 -m pytest -p no:cacheprovider -q -m gpu tests/metric/test_retrieval_gpu.py \
    -rfE --tb=long 2>&1 | tail -n 150
echo "pytest exit status: ${PIPESTATUS[0]}"
echo "=== 2. benchmark: benchmarks/bench_metric.py --reps 10 --warmup 2 ==="
timeout 120 python3 benchmarks/bench_metric.py --reps 10 --warmup 2 2>&1
echo "benchmark exit status: $?"
