#!/usr/bin/env bash
# One device call that checks Verifier v2 on a GPU host and measures it (run from the
# repository root of a checkout carrying gpu-bundle/; build the benches first, then the
# bundle: `cmake --build build --target benches && scripts/gpu-e2e.sh bundle gpu-bundle`):
#
#   OUT=/some/dir bash bench/gpu_session.sh   # PYTHON=/opt/torch/.venv/bin/python by default
#
# 0. bench/cuda_exit_probe.py: how long a killed CUDA process takes to be gone (the kill of
#    the candidate's worker is most of v2's overhead outside compile, checks and profile)
# 0b. bench/precision_margins.py --cuda: how honest orders of addition and narrower inputs
#    compare with cuBLAS's error (the float64 second look's budgets depend on it)
# 0c. bench/precision_dump.py: real outputs (cuBLAS, float64, Triton IEEE and TF32 kernels) saved
#    under $OUT/dump, for bench/precision_replay.py to replay the judge's precision check on
#    any host (the second look's budgets are tuned there against what the card computes)
# 1. kforge-bench-verifier: one process per job against v2 with WARM warm workers, in the
#    same run (the figures of docs/performance.md). WARM defaults to 5: each worker's warm-up
#    takes 1.1-1.4 s on an H100, so 3 make about 2.5 a second where back-to-back jobs of
#    0.28 s take 3.6, and the jobs wait for them
# 2. scripts/gpu-e2e.sh run: the GPU campaign, every verdict against examples/gpu/expected.json
# 3. tests/harness/cases_cuda.json: the hostile CUDA corpus through the judge and the workers,
#    as the agent runs them (every verdict checked against the case's expectation)
# Each step has its own time limit, so a hang costs that step only; each prints its seconds.
P=${PYTHON:-/opt/torch/.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/kforge-gpu-session}
WARM=${WARM:-5}
mkdir -p "$OUT"
nvidia-smi -L
step() { echo "=== $1 ($(date -u +%T))"; }
t0=$SECONDS
step "cuda_exit_probe"
timeout 60 "$P" bench/cuda_exit_probe.py 3 2>&1 | tee "$OUT/cuda_exit.txt" | tail -4
echo "--- ${SECONDS}s"
step "precision margins, cuBLAS as the reference"
timeout 120 "$P" bench/precision_margins.py --cuda 2>&1 | tee "$OUT/precision_margins.txt" | cut -c1-400
echo "--- ${SECONDS}s"
step "precision dump: reference, truth and candidates' outputs on this card"
timeout 120 "$P" bench/precision_dump.py "$OUT/dump" 24 2>&1 | tail -6
echo "--- ${SECONDS}s"
step "bench, process against v2, $WARM warm workers"
timeout 150 gpu-bundle/bin/kforge-bench-verifier --python "$P" \
  --harness agent/harness --backend cuda --impl-type triton --framework torch --task-type profile \
  --op-name vector_add --task tests/harness/tasks/vector_add_torch.py \
  --candidate tests/harness/candidates/add_triton_ok.py --warmup-jobs 3 --jobs 12 \
  --modes process,v2 --warm-workers "$WARM" 2>&1 | tee "$OUT/bench.txt" | tail -60
echo "--- ${SECONDS}s"
step "campaign"
KFORGE_E2E_DEADLINE_S=140 timeout 150 bash scripts/gpu-e2e.sh run gpu-bundle "$OUT/e2e" 2>&1 | tail -25
head -60 "$OUT/e2e/summary.md" 2>/dev/null
echo "--- ${SECONDS}s"
step "cases_cuda.json"
(cd tests/harness && KFORGE_TEST_PYTHON=$P KFORGE_V2RUN_PROFILE=1 timeout 150 "$P" v2run.py cases_cuda.json 2>&1 | tee "$OUT/cases_cuda.txt" | cut -c1-1500 | tail -60)
echo "--- ${SECONDS}s (session $((SECONDS - t0)) s)"
