#!/usr/bin/env bash
# Issue 21's two fleet soaks side by side on one many-core host (a device host of
# scripts/gpu-e2e.sh's bundle carries kforge-bench-scale and kforge-coordinator), each
# coordinator pinned to two cores of its own (the issue's "2 cores"), the fake agents on the
# others (cores 6 and up):
#   A  10,000 agents x 8 devices, 1 s heartbeats both ways
#   B  1,000 agents x 8 devices, 100 ms heartbeats both ways (the coordinator's too, so both
#      directions of every connection reach their plateau within the run)
#   C  10,000 agents x 8 devices, 250 ms heartbeats both ways: A's fleet with its hours
#      compressed (libzmq's per-connection queue chunks resident after ~130 s instead of ~9
#      minutes: docs/performance.md), so the plateau shows within the run
#   bash bench/fleet_soak.sh BUNDLE SECONDS OUT_DIR
# (AGENTS_A, AGENTS_B change the fleets' sizes; with fewer than 8 cores nothing is pinned.)
# Prints each run's samples (RSS, CPU) and summary; the raw outputs go to OUT_DIR.
set -euo pipefail
bundle=${1:?bundle dir}
seconds=${2:-480}
out=${3:-/tmp/fleet-soak}
mkdir -p "$out"
bench="$bundle/bin/kforge-bench-scale"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cores=$(nproc)
on() {  # on CPUS COMMAND...: pinned to CPUS where the host has 8 cores or more
  if [ "$cores" -ge 8 ]; then taskset -c "$@"; else shift; "$@"; fi
}
coordinator=$(readlink -f "$bundle/bin/kforge-coordinator")
# soak NAME COORDINATOR_CPUS AGENTS HEARTBEAT_MS AGENT_PROCESSES: one run in the background,
# its coordinator (through a wrapper, as --coordinator takes one program) on its own cores
soak() {
  local wrapper="$out/coordinator-$1.sh"
  printf '#!/bin/sh\nexec %s "%s" "$@"\n' \
    "$([ "$cores" -ge 8 ] && echo "taskset -c $2")" "$coordinator" >"$wrapper"
  chmod +x "$wrapper"
  on 6-$((cores - 1)) "$bench" --coordinator "$wrapper" --agents "$3" --devices 8 \
    --seconds "$seconds" --heartbeat-ms "$4" --coordinator-heartbeat-ms "$4" \
    --agent-processes "$5" --agent-threads 2 --sample-ms 30000 >"$out/$1.txt" 2>&1 &
}
soak a-10000x8-1s 0,1 "${AGENTS_A:-10000}" 1000 4
a=$!
soak b-1000x8-100ms 2,3 "${AGENTS_B:-1000}" 100 2
b=$!
c=
if [ "${RUN_C:-1}" = 1 ] && [ "$cores" -ge 8 ]; then
  soak c-10000x8-250ms 4,5 "${AGENTS_A:-10000}" 250 4
  c=$!
fi
wait $a || echo "run A exited $?"
wait $b || echo "run B exited $?"
[ -z "$c" ] || wait $c || echo "run C exited $?"
for f in "$out"/*.txt; do echo "=== $f"; grep -v "^sample" "$f" | head -40; grep "^sample" "$f"; done
