#!/usr/bin/env bash
# GPU hand-over of helper lifspec (specialised LIF backward, kernels/lif.cu lif_backward_fixed).
# Run from the tree root on the GPU machine, with the SpikingJelly/snnTorch wheels in .whl/.
# Four steps, each under `timeout`; about 3-4 minutes in all.
set -u
export PYTHONUNBUFFERED=1
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

step "1. SpikingJelly 2.0 / snnTorch 1.0 wheels into /tmp/site"
timeout 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
export PYTHONPATH=.:/tmp/site
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

step "2. GPU tests: the specialised backward instances (test_lif_fixed_gpu.py: all-pairs over
dtype, T, surrogate, reset, detach, decay, trace gradient, chunk-ahead loads, v0; and the
default path at T = 4..32) and the existing kernel tests (test_lif_gpu.py), against the
reference with poisoned outputs.  Each instance compiles on first launch."
timeout 130 python3 -m pytest -p no:cacheprovider -q -rs -m gpu \
    tests/snn/test_lif_fixed_gpu.py tests/snn/test_lif_gpu.py 2>&1 | tail -40

step "3. Kernel alone (us per launch, CUDA events, median of 30): the backward as
'general' (the kernel shipped before: options read at run time, grid-stride loop), 'fixed'
(options fixed at compile time, exact grid, dL/dS 8 steps at a time) and 'fixed-ahead' (the
same, dL/dS loaded a chunk ahead; the default at T <= 16, toolkit/snn/_lif_cuda.py
_AHEAD_MAXT); GB/s = the fewest bytes (read X, bits, dL/dS; write dL/dX) / time.  Then the
forward alone and the bandwidth floors of saving H instead of the spike bits."
timeout 70 python3 benchmarks/snn.py --no-compare --kernels --reps 30 --warmup 5 2>&1 | tail -60

step "4. Forward+backward through autograd vs SpikingJelly / snnTorch / torch loop, float32 and
float16 at T = 4, 8, 16, 32 (median ms of single calls, speed-up vs SpikingJelly), then
--profile: host issue time, event time over 20 back-to-back calls, and device time per kernel
(us per call) at T = 4 and 32."
timeout 100 python3 benchmarks/snn.py --profile --reps 20 --warmup 5 2>&1 | tail -80
step "done"
