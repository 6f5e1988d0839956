#!/usr/bin/env bash
# Issue 17's GPU measurement in one device call (docs/performance.md, "Search strategies on a
# GPU"; examples/gpu-search/README.md): seven KernelBench-level-1-style ops searched with
# fix_loop, evolve and best_of_n, one campaign each, at the same per-task device-second budget,
# the Coder a scripted server proposing real Triton variants. Run from the repository root of a
# checkout carrying gpu-bundle/ (made here with `scripts/gpu-e2e.sh bundle gpu-bundle`):
#
#   bash bench/gpu_search.sh      # PYTHON=/opt/torch/.venv/bin/python, OUT=$OUT or /tmp/...
#
# Writes OUT/search/: summary.md (the comparison), summary.json, versions.json, env.txt,
# gpu-e2e.log and gpu-e2e.tar.gz (every campaign's data, logs, reports and the scripted
# Coder's answers). About 8 minutes: bounded by KFORGE_E2E_DEADLINE_S (default 500 s), the
# whole under `timeout 530`. The per-task budget is KFORGE_SEARCH_DEVICE_S (default 20 s),
# each campaign's wall budget KFORGE_SEARCH_WALL_S (default 170 s, less when the deadline
# leaves less; best_of_n, last, is skipped when under 30 s remain).
#
# The verifier's device-memory transport is on (KFORGE_VERIFIER_CUDA_IPC=1, docs/harness.md):
# through host memory every timed call of these 8-16M-element kernels pays PCIe copies that
# compress the speedups toward 1 (docs/performance.md, "Verifier v2"). KFORGE_VERIFIER_CUDA_IPC=0
# turns it off.
P=${PYTHON:-/opt/torch/.venv/bin/python}
OUT=${OUT:-${TMPDIR:-/tmp}/kforge-gpu-search}
mkdir -p "$OUT"
nvidia-smi -L
[[ -x gpu-bundle/bin/kforge ]] || { echo "no gpu-bundle/: scripts/gpu-e2e.sh bundle gpu-bundle (here, then carry it)"; exit 1; }
KFORGE_GPU_PYTHON=$P KFORGE_VERIFIER_CUDA_IPC=${KFORGE_VERIFIER_CUDA_IPC-1} \
  KFORGE_E2E_DEADLINE_S=${KFORGE_E2E_DEADLINE_S:-500} KFORGE_SEARCH_WALL_S=${KFORGE_SEARCH_WALL_S:-170} \
  timeout 530 bash scripts/gpu-e2e.sh search gpu-bundle "$OUT/search" > "$OUT/search.log" 2>&1
rc=$?
grep -v '^|' "$OUT/search.log" | tail -40
echo "=== $OUT/search/summary.md (exit $rc)"
cat "$OUT/search/summary.md" 2>/dev/null
exit $rc
