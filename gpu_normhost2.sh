#!/usr/bin/env bash
# normhost2: the norm layers' leaner host path on the GPU (issue 13).  Run from the worktree
# root on the GPU machine: bash gpu_normhost2.sh   (< 4 min: 80 s of tests, 150 s of benchmark;
# the benchmark prints each table as it finishes, so a time-out keeps what came before)
export PYTHONPATH=.
nvidia-smi --query-gpu=name --format=csv,noheader
echo "== 1. norm GPU tests (kernels vs reference with poisoned outputs; layers on the GPU, which"
echo "==    now launch through toolkit._launch.Launcher / CuPy's launchKernel)"
timeout 80 python3 -m pytest -p no:cacheprovider -q -m gpu tests/norm -x -rfE 2>&1 | tail -40
echo "== 2. benchmarks/norm.py --quick --profile: layer fwd+bwd vs cuDNN (3 of the 5 issue shapes,"
echo "==    both dtypes), the targets table, the ResNet-18-style training step, and the per-step"
echo "==    profile: 'host us' = wall time to issue one forward+backward without sync (compare"
echo "==    with benchmarks/RESULTS.md 'Lean norm layer': 580-1000 us ours, 250-350 us cuDNN)"
timeout 150 python3 benchmarks/norm.py --quick --profile --reps 20 --train-reps 8 --out /tmp/normhost2 2>&1 | tail -130
