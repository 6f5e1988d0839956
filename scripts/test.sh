#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test through ctest.
#   ./scripts/test.sh                   the whole suite
#   ./scripts/test.sh -R store          only tests matching a regex (ctest -R)
#   KFORGE_SANITIZE=1 ./scripts/test.sh  with ASan+UBSan (build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake_args=()
if [ "${KFORGE_SANITIZE:-0}" = 1 ]; then
  export KFORGE_BUILD_DIR=${KFORGE_BUILD_DIR:-build-asan}
  cmake_args+=(-DKFORGE_SANITIZE=ON)
elif [ "${KFORGE_TSAN:-0}" = 1 ]; then
  export KFORGE_BUILD_DIR=${KFORGE_BUILD_DIR:-build-tsan}
  cmake_args+=(-DKFORGE_TSAN=ON)
  export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-}"
fi
./scripts/build.sh "${cmake_args[@]}"
build_dir=${KFORGE_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cd "$build_dir"
ctest --output-on-failure -j "$jobs" --timeout 300 "$@"
