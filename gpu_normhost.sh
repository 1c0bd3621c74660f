#!/usr/bin/env bash
# GPU hand-over of helper normhost (issue 13, item 4): the norm layers' lean host path.
# Run from the worktree root on the GPU machine: bash gpu_normhost.sh  (about 2-3 minutes).
#  1. every GPU test of tests/norm: kernels vs the float64 reference on fresh random inputs
#     with NaN-poisoned outputs, the device-side sample draw vs its host formula, the running
#     statistics now updated inside bn_stats_finalize, every layer vs the reference computed
#     on exactly its own sample, cuDNN equivalence of BatchSamplingBN2d(sample_ratio=1);
#  2. benchmarks/norm.py --profile: layer forward+backward (CUDA-event median ms, speed-up
#     over cuDNN BatchNorm2d), the issue's targets met/MISSED per shape and dtype, SMN/BN,
#     the per-step profile (host us to issue a step vs event us vs kernel us), and the
#     ResNet-18-style training step (batch 128, 3x112x112, 20 normalization layers).
set -u
cd "$(dirname "$0")"
export PYTHONPATH=.
start=$(date +%s)
echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"
echo "== kernels compile (NVRTC) + GPU tests of tests/norm"
timeout 110 python3 -m pytest -p no:cacheprovider -q -m gpu tests/norm --tb=long --maxfail=15 -rfE
echo "pytest exit code: $? (124 = timed out)"
echo "== benchmarks/norm.py --profile ($(($(date +%s) - start)) s so far)"
timeout 120 python3 benchmarks/norm.py --profile --reps 20 --warmup 5 --train-reps 8 --out /tmp/normhost_bench
echo "benchmark exit code: $? (124 = timed out); total $(($(date +%s) - start)) s"
