#!/usr/bin/env bash
# Builds and runs one set of test executables under a sanitizer, in a build tree of its own.
# Only the executables of the set are built, so that each set fits CI's ~10 minutes per job
# on 2 cores (docs/ci.md has the measured times).
#   ./scripts/sanitize.sh asan   ASan+UBSan (build-asan/): the unit, store and conductor tests
#   ./scripts/sanitize.sh tsan   TSan (build-tsan/): the tests whose code runs on several threads
# Extra arguments go to ctest (./scripts/sanitize.sh tsan -R llm_test).
# A report fails the test: halt_on_error, and UBSan does not recover (-fno-sanitize-recover).
# Python children of the tests are not instrumented; they inherit the *SAN_OPTIONS unread.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-}
shift || true
case "$mode" in
  asan)
    cmake_flag=-DKFORGE_SANITIZE=ON
    tests=(api_test campaign_test check_test cluster_test conductor_rules_test conductor_test
           config_test coordinator_memory_test device_pool_test kernelbench_test llm_test
           log_test nospace_test outbox_test process_test prompts_test protocol_test
           report_test search_test status_test store_test task_test typed_results_test
           verify_result_test watch_test zmq_test)
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    ;;
  tsan)
    cmake_flag=-DKFORGE_TSAN=ON
    tests=(api_test auth_test cluster_test coordinator_memory_test llm_test nospace_test
           process_test search_test task_test verify_test zmq_test)
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    ;;
  *)
    echo "usage: $0 asan|tsan [ctest arguments]" >&2
    exit 2
    ;;
esac
./scripts/setup.sh
build_dir=${KFORGE_BUILD_DIR:-build-$mode}
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${KFORGE_BUILD_TYPE:-RelWithDebInfo}" "$cmake_flag" >/dev/null
# Some tests run the kforge command line (build/cli/kforge): built with the same sanitizer.
cmake --build "$build_dir" -j "$jobs" --target "${tests[@]}" kforge
cd "$build_dir"
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
ctest --output-on-failure -j "$jobs" --timeout 300 -R "$regex" "$@"
