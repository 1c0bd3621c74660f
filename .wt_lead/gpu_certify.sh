#!/usr/bin/env bash
# Helper `certify` (issue 15, item 6): certify_dataset on GPUs.  Run from the repository root
# on a machine with 2 GPUs:  bash gpu_certify.sh      (under 4 minutes)
#  1. the GPU test of tests/verify/test_certify.py: one process on cuda:0 against the CPU run;
#  2. benchmarks/bench_certify.py --gpus 2: the same data set certified by torchrun with 1 and
#     with 2 processes (one per GPU, NCCL); prints T1, T2 (seconds of the certification on
#     rank 0, start-up excluded), the launch wall times, efficiency = T1 / (2 * T2), the
#     per-rank busy seconds / chunks / pairs, and whether the radii are bit-identical.
cd "$(dirname "$0")" || exit 1
export PYTHONPATH=.
# NVLink multicast stays off (shared machines): NCCL, PyTorch and NVSHMEM
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
echo "== date: $(date -u)"
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv 2>&1 | head -5
python3 -c "import torch; print('torch', torch.__version__, 'GPUs', torch.cuda.device_count())"
echo
echo "== 1. GPU test (pytest -m gpu tests/verify/test_certify.py)"
timeout 60 python3 -m pytest -p no:cacheprovider -q -m gpu tests/verify/test_certify.py 2>&1 \
  | tail -40
echo "(exit ${PIPESTATUS[0]})"
echo
echo "== 2. scaling: 1 vs 2 GPUs (benchmarks/bench_certify.py --gpus 2)"
timeout 175 python3 benchmarks/bench_certify.py --gpus 2 --budget 165 2>&1 | tail -60
echo "(exit ${PIPESTATUS[0]}; 124 = timed out)"
