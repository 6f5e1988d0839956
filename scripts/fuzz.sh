#!/usr/bin/env bash
# Long fuzz runs with libFuzzer (docs/security.md, "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 300 s each, every target
#
# Configures ${KFORGE_FUZZ_BUILD_DIR:-build-fuzz} with clang, KFORGE_FUZZ=ON (ASan, UBSan,
# coverage), builds the fuzz targets and runs each for SECONDS. Each target starts from its
# seed corpus (tests/fuzz/corpus/<target>) plus what earlier runs found (kept in
# <build>/fuzz-work/<target>, never in the source tree). A crash, leak, timeout or UB report
# leaves its input in <build>/fuzz-artifacts/ and makes the script fail; fix the bug, then
# copy the input into the target's corpus as its regression test. KFORGE_FUZZ_JOBS runs that
# many fuzzing processes per target (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(wire config campaign api)
build=${KFORGE_FUZZ_BUILD_DIR:-build-fuzz}
jobs=${KFORGE_FUZZ_JOBS:-1}
parallel=()
[ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")  # logs in fuzz-<n>.log then

cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DKFORGE_FUZZ=ON \
  -DKFORGE_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]/#/fuzz_}"

mkdir -p "$build/fuzz-artifacts"
failed=()
for t in "${targets[@]}"; do
  work="$build/fuzz-work/$t"
  mkdir -p "$work"
  echo "== fuzz_$t for ${seconds}s (corpus tests/fuzz/corpus/$t, finds in $work)"
  # -timeout: an input running over 10 s is a hang; -rss_limit_mb: over 2 GiB is a bug.
  if ! "$build/tests/fuzz/fuzz_$t" "$work" "tests/fuzz/corpus/$t" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      "${parallel[@]}" -artifact_prefix="$build/fuzz-artifacts/$t-" 2>&1 |
      tail -n 40; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}; inputs in $build/fuzz-artifacts/" >&2
  exit 1
fi
echo "fuzz: no failure in ${targets[*]} (${seconds}s each)"
