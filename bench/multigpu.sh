#!/usr/bin/env bash
# How busy one agent keeps eight GPUs, without GPUs: kforge-coordinator and one kforge-agent
# that discovers eight H100s from a recorded nvidia-smi listing (tests/fixtures/nvidia-smi/
# h100x8.csv), fed jobs of a fixed length (sleep), against the same agent discovering one.
# What it measures is the scheduler's share of a GPU's time — dispatch, process start, result
# round trip — not a kernel: on a real host the job is the harness (docs/gpu-validation.md).
#
#   bench/multigpu.sh [BUILD_DIR]      # default build/
#
# Environment: KFORGE_BENCH_JOB_S (each job's length, default 1), KFORGE_BENCH_JOBS_PER_GPU
# (default 10). Prints `name: value` lines: for 1 and 8 GPUs the jobs, the device window
# (first job assigned to last finished, coordinator clock), jobs per minute, the per-GPU
# utilisation as the coordinator counts it (assigned to finished, over the window; what
# kforge report shows) and as the jobs themselves saw it (each job logs when its command
# started and ended: the time a GPU had a process on it, over the same window), and the
# mean gap on a GPU between one job's command ending and the next one's starting (result
# sent, recorded, next job assigned, process started); then the ratio of jobs per minute.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
job_s=${KFORGE_BENCH_JOB_S:-1}
per_gpu=${KFORGE_BENCH_JOBS_PER_GPU:-10}
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# Waits (bounded) until file $1 has a line matching $2; prints what follows the match.
wait_line() {
  for _ in $(seq 1 300); do
    if line=$(grep -m1 -o "$2.*" "$1" 2>/dev/null); then echo "${line#"$2"}"; return 0; fi
    sleep 0.1
  done
  echo "bench: no '$2' in $1" >&2; return 1
}

phase() {
  local gpus=$1 dir=$tmp/gpus$1
  mkdir -p "$dir/fixtures"
  printf '[agent]\ncontain = false\n' > "$dir/kforge.toml"   # boxed jobs could not write the span log
  head -n "$gpus" "$root/tests/fixtures/nvidia-smi/h100x8.csv" > "$dir/fixtures/nvidia-smi.csv"
  "$build/coordinator/kforge-coordinator" --data "$dir/data" --listen 'tcp://127.0.0.1:*' \
      --http 127.0.0.1:0 > "$dir/coordinator.out" 2> "$dir/coordinator.log" &
  pids+=($!)
  local endpoint url
  endpoint=$(wait_line "$dir/coordinator.out" "listening ")
  url=$(wait_line "$dir/coordinator.out" "api ")
  "$build/agent/kforge-agent" --config "$dir/kforge.toml" --coordinator "$endpoint" --state "$dir/agent" --cpu-devices 0 \
      --device-fixtures "$dir/fixtures" --no-probe > /dev/null 2> "$dir/agent.log" &
  pids+=($!)
  local kf=("$build/cli/kforge")
  for _ in $(seq 1 300); do
    [[ $("${kf[@]}" agents --json --coordinator "$url" 2>/dev/null | grep -o '"backend": *"cuda"' | wc -l) -ge $gpus ]] && break
    sleep 0.1
  done
  local n=$((gpus * per_gpu))
  : > "$dir/spans.log"
  "${kf[@]}" enqueue --data "$dir/data" --backend cuda --count "$n" -- sh -c \
      "s=\$(date +%s%N); sleep $job_s; echo \"\$KFORGE_DEVICE \$s \$(date +%s%N)\" >> $dir/spans.log" > /dev/null
  # Done when every job has logged its span (a file: polling the API would take the CPU
  # the jobs' processes need on a small machine), then until the coordinator has every result.
  for _ in $(seq 1 $((n * (${job_s%.*} + 1) * 10 + 600))); do
    [[ $(wc -l < "$dir/spans.log" 2>/dev/null || echo 0) -ge $n ]] && break
    sleep 0.1
  done
  for _ in $(seq 1 300); do
    "${kf[@]}" jobs --json --state done --coordinator "$url" > "$dir/jobs.json" 2>/dev/null &&
      [[ $(grep -o '"outcome"' "$dir/jobs.json" | wc -l) -ge $n ]] && break
    sleep 0.1
  done
  /usr/bin/python3 - "$dir/jobs.json" "$gpus" "$n" "$dir/spans.log" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))
gpus, n = int(sys.argv[2]), int(sys.argv[3])
spans = {}
for line in open(sys.argv[4]):
    device, s, e = line.split()
    spans.setdefault(device, []).append((int(s) / 1e6, int(e) / 1e6))  # ms
assert len(jobs) == n and all(j["outcome"] == "exit 0" for j in jobs), "not every job succeeded"
start = min(j["assigned_ms"] for j in jobs)
end = max(j["finished_ms"] for j in jobs)
window = (end - start) / 1000.0
by = {}
for j in jobs:
    by.setdefault(j["device"], []).append(j)
assert sum(len(v) for v in spans.values()) == n, "a job's span is missing"
util = [sum(j["finished_ms"] - j["assigned_ms"] for j in js) / 1000.0 / window for js in by.values()]
ran, gaps = [], []
for device, ss in spans.items():
    ss.sort()
    ran.append(sum(e - s for s, e in ss) / 1000.0 / window)
    gaps += [b[0] - a[1] for a, b in zip(ss, ss[1:])]
p = f"gpus_{gpus}"
print(f"{p}_jobs: {n}")
print(f"{p}_devices_used: {len(by)}")
print(f"{p}_window_s: {window:.2f}")
print(f"{p}_jobs_per_minute: {n / window * 60:.1f}")
print(f"{p}_utilisation_coordinator_mean: {sum(util) / len(util):.3f}")
print(f"{p}_utilisation_coordinator_min: {min(util):.3f}")
print(f"{p}_utilisation_process_mean: {sum(ran) / len(ran):.3f}")
print(f"{p}_utilisation_process_min: {min(ran):.3f}")
print(f"{p}_gap_between_jobs_ms_mean: {sum(gaps) / len(gaps) if gaps else 0:.1f}")
print(f"{p}_gap_between_jobs_ms_max: {max(gaps) if gaps else 0:.1f}")
PY
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

echo "job_s: $job_s"
echo "jobs_per_gpu: $per_gpu"
phase 1 | tee "$tmp/one.txt"
phase 8 | tee "$tmp/eight.txt"
one=$(awk '/_jobs_per_minute/ {print $2}' "$tmp/one.txt")
eight=$(awk '/_jobs_per_minute/ {print $2}' "$tmp/eight.txt")
awk -v a="$eight" -v b="$one" 'BEGIN { printf "jobs_per_minute_ratio_8_to_1: %.2f\n", a / b }'
