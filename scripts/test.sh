#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
#   ./scripts/test.sh                   the whole suite
#   ./scripts/test.sh -R store          only tests matching a regex (ctest -R)
# The sanitizer runs are scripts/sanitize.sh (build trees of their own, chosen tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
KFORGE_BENCHES=0 ./scripts/build.sh  # no test runs a benchmark: they build with ./scripts/build.sh
build_dir=${KFORGE_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cd "$build_dir"
ctest --output-on-failure -j "$jobs" --timeout 300 "$@"
