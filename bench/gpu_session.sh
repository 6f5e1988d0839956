#!/usr/bin/env bash
# One device call that checks Verifier v2 on a GPU host and measures it (run from the
# repository root of a checkout carrying gpu-bundle/, made with `scripts/gpu-e2e.sh bundle
# gpu-bundle`; OUT = a directory for the campaign's files):
#
#   bash bench/gpu_session.sh            # PYTHON=/opt/torch/.venv/bin/python by default
#
# 1. bench/cuda_ipc_probe.py: framework ops and Triton launches on views of a shared device
#    buffer (CUDA VMM, passed as a file descriptor), step by step; again across PID namespaces
# 2. bench/triton_compile_probe.py: where a fresh worker's first Triton call goes
# 3. tests/harness/cases_cuda.json through the judge with the device-memory transport, then the
#    one case that failed on views (triton_add_torch_fallback) without private inputs
# 4. kforge-bench-verifier: one process per job against v2, in the same run
# 5. scripts/gpu-e2e.sh run: the GPU campaign, every verdict against examples/gpu/expected.json
# Each step has its own time limit, so a hang costs that step only.
P=${PYTHON:-/opt/torch/.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/kforge-gpu-session}
nvidia-smi -L
echo "=== ipc probe"; timeout 60 "$P" bench/cuda_ipc_probe.py 2>&1 | tail -32
echo "=== ipc probe, child in its own PID namespace"
timeout 60 "$P" bench/cuda_ipc_probe.py --pidns 2>&1 | tail -14
echo "=== compile probe"; timeout 45 "$P" bench/triton_compile_probe.py 2>&1 | tail -9
(
  cd tests/harness || exit 1
  echo "=== cases, device transport"
  KFORGE_VERIFIER_CUDA_IPC=1 KFORGE_TEST_PYTHON=$P timeout 120 "$P" v2run.py cases_cuda.json 2>&1 | tail -25
  echo "=== the fallback case on views of the shared buffer"
  KFORGE_VERIFIER_CUDA_IPC=1 KFORGE_VERIFIER_CUDA_IPC_PRIVATE=0 KFORGE_TEST_PYTHON=$P \
    timeout 60 "$P" v2run.py cases_cuda.json triton_add_torch_fallback 2>&1 | tail -8
)
echo "=== bench"
KFORGE_VERIFIER_CUDA_IPC=1 timeout 150 gpu-bundle/bin/kforge-bench-verifier --python "$P" \
  --harness agent/harness --backend cuda --impl-type triton --framework torch --task-type profile \
  --op-name vector_add --task tests/harness/tasks/vector_add_torch.py \
  --candidate tests/harness/candidates/add_triton_ok.py --warmup-jobs 2 --jobs 10 \
  --modes process,v2 2>&1 | tail -22
echo "=== campaign"
KFORGE_VERIFIER_CUDA_IPC=1 KFORGE_E2E_DEADLINE_S=230 timeout 250 bash scripts/gpu-e2e.sh run gpu-bundle "$OUT/e2e" 2>&1 | tail -45
head -70 "$OUT/e2e/summary.md" 2>/dev/null
