#!/usr/bin/env bash
# scripts/gpu-e2e.sh without a GPU: `bundle` from this build (the three programs, every shared
# library, glibc and its loader; each wrapper must run through the bundled loader), then
# `smoke`: the run mode's whole path — kforge-coordinator and kforge-agent started from the
# bundle as separate processes, kforge submit, status --watch, results, show, jobs, report,
# export, metrics, check_results.py — with the CPU demo campaign instead of the GPU one; then
# `multi-smoke`: multi's path (one device, cut and cancelled, then every device) on CPUs.
#   tests/deploy/gpu_e2e_smoke.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
KFORGE_BUILD_DIR=$build bash "$src/scripts/gpu-e2e.sh" bundle "$tmp/bundle"
for p in kforge kforge-coordinator kforge-agent; do
  head -c 2 "$tmp/bundle/bin/$p" | grep -q '#!' || { echo "bin/$p is not the wrapper"; exit 1; }
done
test -x "$tmp/bundle/lib/ld-linux-x86-64.so.2"
test -e "$tmp/bundle/lib/libc.so.6"
test -e "$tmp/bundle/lib/libzmq.so.5"
test -f "$tmp/bundle/share/kforge/harness/kforge_harness.py"
test -f "$tmp/bundle/share/kforge/examples/gpu/expected.json"
KFORGE_E2E_DEADLINE_S=240 KFORGE_E2E_WORK=$tmp/work bash "$src/scripts/gpu-e2e.sh" smoke "$tmp/bundle" "$tmp/out" \
    > "$tmp/smoke.log" 2>&1 || {
  tail -40 "$tmp/smoke.log"; exit 1; }
python3 - "$tmp/out" <<'PY'
import json, sys
out = sys.argv[1]
summary = json.load(open(f"{out}/summary.json"))
assert summary["ok"], summary["problems"]
results = json.load(open(f"{out}/results.json"))
assert len(results) == 12 and all(t["state"] == "passed" for t in results), results
rows = summary["overhead_ms"]
assert len(rows) == 16, len(rows)  # 12 first attempts + 4 fixes
assert all(r.get("wall", 0) > 0 and "process_start" in r for r in rows), rows
print(f"gpu-e2e smoke: {len(results)} tasks passed, {len(rows)} jobs, bundle ok")
PY
# OUT holds what the device tool brings back (at most 8 files); the rest is in the tarball
test "$(cd "$tmp/out" && LC_ALL=C ls | tr '\n' ' ')" = 'env.txt gpu-e2e.log gpu-e2e.tar.gz results.json summary.json summary.md versions.json '
tar -tzf "$tmp/out/gpu-e2e.tar.gz" > "$tmp/tar.list"   # not piped into grep -q: pipefail
grep -q '/report/index.html$' "$tmp/tar.list"
test -f "$tmp/work/report/index.html"
test -d "$tmp/work/export/passed"
grep -q '^kforge_jobs{state="done"} 16' "$tmp/work/metrics.txt"

# multi-smoke: multi's path (the campaign on one device for a while, cancelled, then on every
# device, jobs per minute against the first) with the demo on one CPU device, then two.
# A verification takes well under a second on a warm worker, so the LLM sets the pace: every
# task's answer comes 3 s after its question, all 12 tasks at once (16 requests in flight).
# The first verifications are then all queued together at about 6 s, more than one device
# takes at a time, and the one-device run is cut as soon as 2 jobs are done (at most 60 s:
# a loaded host's warm start can take longer than the first answers), long before the fix
# round's answers: part of the campaign done, never all of it.
KFORGE_E2E_LLM_LATENCY_MS=3000 KFORGE_E2E_LLM_CONCURRENCY=16 KFORGE_E2E_DEADLINE_S=240 \
KFORGE_E2E_BASELINE_S=60 KFORGE_E2E_BASELINE_JOBS=2 KFORGE_E2E_WORK=$tmp/mwork \
    bash "$src/scripts/gpu-e2e.sh" multi-smoke "$tmp/bundle" "$tmp/mout" > "$tmp/multi.log" 2>&1 || {
  tail -40 "$tmp/multi.log"; exit 1; }
python3 - "$tmp/mout" "$tmp/mwork" <<'PY'
import json, sys
out, work = sys.argv[1:]
summary = json.load(open(f"{out}/summary.json"))
assert summary["ok"], summary["problems"]
results = json.load(open(f"{out}/results.json"))
assert len(results) == 12 and all(t["state"] == "passed" for t in results), results
d = summary["devices"]
assert d["devices_used"] == 2 and d["jobs"] == 16, d
assert sorted(x["device"] for x in d["per_device"]) == ["cpu:0", "cpu:1"], d["per_device"]
assert all(x["jobs"] > 0 and 0 < x["utilisation"] <= 1 for x in d["per_device"]), d["per_device"]
assert d["baseline"]["devices_used"] == 1 and 0 < d["baseline"]["jobs"] < 16, d["baseline"]
assert d["jobs_per_minute_ratio"] > 0, d
# the baseline was cut: its campaign cancelled, what finished kept
base = json.load(open(f"{work}/one-device/results.json"))
assert any(t["state"] == "cancelled" for t in base), [t["state"] for t in base]
print(f"gpu-e2e multi-smoke: {d['jobs']} jobs on 2 devices, baseline {d['baseline']['jobs']} on 1, "
      f"ratio {d['jobs_per_minute_ratio']}")
PY
