#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
#   ./scripts/test.sh                   the whole suite
#   ./scripts/test.sh -R store          only tests matching a regex (ctest -R)
# The sanitizer runs are scripts/sanitize.sh (build trees of their own, chosen tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# No test runs a benchmark (they build with ./scripts/build.sh); the build is -O1 without
# debug info (KFORGE_FAST_BUILD in CMakeLists.txt) unless KFORGE_FAST_BUILD=0.
KFORGE_BENCHES=0 ./scripts/build.sh -DKFORGE_FAST_BUILD="$([ "${KFORGE_FAST_BUILD:-1}" = 0 ] && echo OFF || echo ON)"
build_dir=${KFORGE_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cd "$build_dir"
ctest --output-on-failure -j "$jobs" --timeout 300 "$@"
