#!/usr/bin/env bash
# How busy the devices stay while the LLM takes its time: the CPU demo campaign
# (examples/demo/campaign.toml, 12 tasks, Designer and Coder replayed from its recording)
# through `kforge run` on 2 CPU devices, with every replayed answer delayed by
# replay_latency_ms after it gets one of the endpoint's `concurrency` slots (docs/llm.md),
# for each latency and each concurrency. The Verifier's jobs are real (compile, check, time).
#
#   bench/llm_latency.sh [BUILD_DIR]      # default build/
#
# Environment: KFORGE_BENCH_LATENCIES_MS (default "0 1000 3000"), KFORGE_BENCH_CONCURRENCY
# (default "4 16"). Prints `name: value` lines per run (prefix latency_<ms>ms_conc_<n>): the
# wall seconds of `kforge run`, the LLM calls, and from `kforge report --json`
# (docs/reports.md) the mean busy devices, the device window, jobs per minute and each
# device's utilisation (its jobs' leases over the window).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
latencies=${KFORGE_BENCH_LATENCIES_MS:-0 1000 3000}
concurrencies=${KFORGE_BENCH_CONCURRENCY:-4 16}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

one_run() {
  local latency=$1 conc=$2 dir=$tmp/run_$1_$2
  mkdir -p "$dir"
  local role
  {
    printf '[log]\nlevel = "warn"\n\n[agent]\ncpu_devices = 2\n'
    for role in designer coder; do
      # Both roles share one limit (same base_url and model), as one model server would.
      printf '\n[llm.%s]\nprovider = "replay"\nrecording = "%s"\nconcurrency = %s\nreplay_latency_ms = %s\n' \
        "$role" "$root/examples/demo/recording.jsonl" "$conc" "$latency"
    done
  } > "$dir/kforge.toml"
  local start end
  start=$(date +%s%N)
  "$build/cli/kforge" run "$root/examples/demo/campaign.toml" --data "$dir/data" --config "$dir/kforge.toml" \
      > "$dir/run.out" 2> "$dir/run.log" || { cat "$dir/run.log" >&2; echo "bench: kforge run failed" >&2; return 1; }
  end=$(date +%s%N)
  "$build/cli/kforge" report 1 --json --data "$dir/data" > "$dir/report.json"
  /usr/bin/python3 - "$dir/report.json" "latency_${latency}ms_conc_${conc}" $(((end - start) / 1000000)) <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
p, wall_ms = sys.argv[2], int(sys.argv[3])
d = r["device"]
fmt = lambda v, f: "null" if v is None else format(v, f)
print(f"{p}_wall_s: {wall_ms / 1000:.1f}")
print(f"{p}_llm_calls: {r.get('llm', {}).get('calls', 'null')}")
print(f"{p}_mean_busy_devices: {fmt(d['mean_busy_devices'], '.2f')}")
print(f"{p}_window_s: {fmt(d['window_seconds'], '.1f')}")
print(f"{p}_jobs_per_minute: {fmt(d['jobs_per_minute'], '.1f')}")
for row in d["per_device"]:
    print(f"{p}_utilisation_{row['device'].replace(':', '')}: {fmt(row['utilisation'], '.3f')}")
PY
}

echo "devices: 2 cpu"
for latency in $latencies; do
  for conc in $concurrencies; do
    one_run "$latency" "$conc"
  done
done
