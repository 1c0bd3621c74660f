#!/usr/bin/env bash
# GPU work of helper certq (issue 15 item 6: certify_dataset over several GPUs with a shared
# work queue).  Run from the worktree root on a machine with 2 GPUs; under 4 minutes in all
# (every step has its own timeout; step 3 only gets what is left of 230 s).
#   1. The certify GPU tests: one process on cuda:0 against the CPU run; two processes on
#      two GPUs in an NCCL group (the work queue on torchrun's TCP store) against one GPU,
#      every chunk done once, a rank slowed by 1 s a chunk claims fewer.
#   2. benchmarks/bench_certify.py --gpus 2 --budget 140: the previous run's configuration
#      (128 sentences of 6..12 words, shipped 1-layer model, CROWN radius to tol 1/64,
#      8 sentences per chunk; before the queue: T1 36.72 s, T2 21.82 s, efficiency 0.841,
#      imbalance 1.123).  Columns: T_P = seconds of the certification on rank 0 (start-up
#      outside); launch = wall seconds of the torchrun launch; eff = T_1 / (P * T_P);
#      imbal = max busy / mean busy over the ranks; per rank busy / seconds to its last
#      chunk / chunks / (sentence, position) pairs.  It also says whether the 2-GPU radii
#      equal the 1-GPU radii bit for bit.
#   3. The same with 4 sentences per chunk on 96 sentences (more, smaller chunks: a shorter
#      tail, but each bound call does less; T_1 is not comparable with step 2),
#      only if enough time is left.
cd "$(dirname "$0")"
export PYTHONPATH=.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$SECONDS
nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader || true
echo "== 1. GPU tests: tests/verify/test_certify.py -m gpu (1 GPU vs CPU; 2 GPUs over NCCL vs 1 GPU)"
timeout 75 python3 -m pytest -p no:cacheprovider -q -m gpu tests/verify/test_certify.py 2>&1 | tail -n 200
echo "== 2. benchmark: bench_certify.py --gpus 2 --budget 140 (8 sentences per chunk)"
timeout 150 python3 benchmarks/bench_certify.py --gpus 2 --budget 140
LEFT=$((230 - (SECONDS - T0)))
if [ "$LEFT" -ge 70 ]; then
  echo "== 3. benchmark: --sentences 96 --batch-size 4 (4 sentences per chunk), budget $((LEFT - 8)) s"
  timeout "$LEFT" python3 benchmarks/bench_certify.py --gpus 2 --sentences 96 --batch-size 4 \
    --budget $((LEFT - 8))
else
  echo "== 3. skipped: only $LEFT s left of the 230 s budget"
fi
echo "== done in $((SECONDS - T0)) s"
