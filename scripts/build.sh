#!/usr/bin/env bash
# Configures and builds kforge into ${KFORGE_BUILD_DIR:-build}. Extra arguments go to cmake
# at configure time (e.g. -DKFORGE_SANITIZE=ON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${KFORGE_BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${KFORGE_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$build_dir" -j "$jobs"
