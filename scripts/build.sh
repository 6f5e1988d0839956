#!/usr/bin/env bash
# Configures and builds kforge into ${KFORGE_BUILD_DIR:-build}. Extra arguments go to cmake
# at configure time (e.g. -DKFORGE_SANITIZE=ON). Builds `all` and the benchmarks (`benches`);
# KFORGE_BENCHES=0 leaves the benchmarks out.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KFORGE_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
# KFORGE_FAST_BUILD off unless an argument turns it on (scripts/test.sh): a build tree that
# test.sh configured goes back to the build type's flags here
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${KFORGE_BUILD_TYPE:-RelWithDebInfo}" \
  -DKFORGE_FAST_BUILD=OFF "$@" >/dev/null
# The benchmarks too (outside `all`), unless KFORGE_BENCHES=0 (scripts/test.sh: no test runs them)
targets=(all)
[ "${KFORGE_BENCHES:-1}" = 0 ] || targets+=(benches)
cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}"
