#!/usr/bin/env bash
# The kforge demo, end to end on this host: installs what is missing, builds the three
# programs it runs (kforge, kforge-coordinator, kforge-agent; not the tests), then
#
#   part 1 (first): the README's first campaign, command for command: `kforge import
#     kernelbench` writes a campaign from six KernelBench level-1 problems
#     (examples/kernelbench/level1), `kforge run` generates C++ kernels for this CPU with the
#     LLM replayed from examples/kernelbench/recording.jsonl (four pass first time, one is
#     fixed after a precision mismatch, one after a rejected torch fallback), and `kforge
#     report` writes the report.
#   part 2 (campaign): `kforge run` drives a 12-task kernel-generation campaign (6 ops x 2
#     shapes, C++ kernels for this CPU) through Designer -> Coder -> Verifier, with the LLM
#     replayed from examples/demo/recording.jsonl. Some first attempts fail (a tail bug, a
#     softmax overflowing to NaN, a C++ syntax error, a torch fallback the Verifier rejects)
#     and the Conductor sends them back to the Coder; every task ends passed and timed.
#   part 3 (cluster): a coordinator and two agents as separate processes; one agent is
#     killed with SIGKILL mid-run and every job still completes exactly once.
#
#   scripts/demo.sh            all three parts
#   scripts/demo.sh first      part 1 only (about 30 s once built)
#   scripts/demo.sh campaign   part 2 only (about 40 s once built)
#   scripts/demo.sh cluster    part 3 only
#   KFORGE_DEMO_SKIP_BUILD=1   skip setup.sh and the build (binaries from ${KFORGE_BUILD_DIR:-build})
#
# No GPU, model server or key is needed. docs/demo.md explains what is shown and how the
# recordings are laid out.
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-all}
case "$parts" in all|first|campaign|cluster) ;; *) echo "usage: $0 [all|first|campaign|cluster]" >&2; exit 2 ;; esac

# Configures and builds the three programs, the build's progress on one line (a terminal) and
# its whole output in demo-out/build.log, whose tail is shown if it fails.
build_programs() {
  local dir=${KFORGE_BUILD_DIR:-build} log=demo-out/build.log start=$SECONDS
  local targets=(kforge kforge-coordinator kforge-agent)
  mkdir -p demo-out
  echo "building ${targets[*]} in $dir/ (full log: $log)"
  local line step='^(\[[^]]*\]) (Building|Linking) '
  if ! { cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="${KFORGE_BUILD_TYPE:-RelWithDebInfo}" &&
         cmake --build "$dir" -j "$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}"; } 2>&1 |
       tee "$log" |
       while IFS= read -r line; do
         # "[ 42%] Building CXX object coordinator/.../conductor.cpp.o" -> "[ 42%] conductor.cpp"
         if [ -t 1 ] && [[ $line =~ $step ]]; then
           line="${BASH_REMATCH[1]} ${line##*[ /]}"
           printf '\r\033[K  %s' "${line%.o}"
         fi
       done; then
    if [ -t 1 ]; then printf '\n'; fi
    tail -n 40 "$log" >&2
    echo "the build failed; the last 40 lines are above, the whole log is $log" >&2
    exit 1
  fi
  if [ -t 1 ]; then printf '\r\033[K'; fi  # the progress line gives way to the summary
  echo "built in $((SECONDS - start)) s"
}

if [ "${KFORGE_DEMO_SKIP_BUILD:-0}" != 1 ]; then  # 1: use the binaries already in the build dir
  ./scripts/setup.sh
  build_programs
fi

bin=${KFORGE_BUILD_DIR:-build}
kforge="$bin/cli/kforge"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '\033[2m%s\033[0m\n' "$@"; }

# One line from a report's report.json: fast_0, fast_1, fast_2 and the geometric-mean speedup.
report_summary() {
  /usr/bin/python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
pct = lambda x: "-" if x["value"] is None else f'{100 * x["value"]:.0f}% ({x["count"]}/{x["of"]})'
print(f'  correct (fast_0) {pct(m["fast_0"])}, faster than torch (fast_1) {pct(m["fast_1"])}, '
      f'2x faster (fast_2) {pct(m["fast_2"])}; geometric-mean speedup ' +
      ("-" if m["speedup"]["geomean"] is None else f'{m["speedup"]["geomean"]:.2f}x'))
PY
}

# Appends the host's load to a results table: timings taken beside other work are slower.
record_load() {
  echo "# load average at the end of the run: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >>"$1"
}

# The README's "A first campaign", command for command (with build/cli/kforge for kforge).
first_demo() {
  local out=demo-out/first
  rm -rf "$out" "$out.toml" "$out.log"
  mkdir -p demo-out
  say "part 1: the README's first campaign (six KernelBench level-1 problems, C++ for this CPU)"
  note "examples/kernelbench/level1 holds six problem files in KernelBench's format (class Model," \
       "get_inputs, get_init_inputs); kforge import kernelbench makes them a campaign, one task" \
       "each. kforge run asks the Designer and the Coder (replayed from" \
       "examples/kernelbench/recording.jsonl: no model, same answers every run) and has the" \
       "Verifier compile, check and time every candidate against the torch reference."
  echo "\$ kforge import kernelbench examples/kernelbench --level 1 --target cpu/x86_64/cpp --limit-steps 6 --timing kforge --out $out.toml"
  "$kforge" import kernelbench examples/kernelbench --level 1 --target cpu/x86_64/cpp --limit-steps 6 --timing kforge --out "$out.toml"
  echo "\$ kforge run $out.toml --data $out --config examples/kernelbench/kforge.toml"
  local start=$SECONDS rc=0
  # The log (stderr) goes to $out.log; the tasks' outcomes and the progress are shown.
  # (The process substitution comes first so that its output goes to the terminal.)
  "$kforge" run "$out.toml" --data "$out" --config examples/kernelbench/kforge.toml \
      2> >(tee "$out.log" | grep --line-buffered -E 'task [0-9]+ (passed|failed)|tasks done' \
           | sed -u -E 's/^[0-9T:.-]+Z [a-z]+ kforge: /  /; s/ passed: passed$/ passed/') \
      >"$out.results.txt" || rc=$?
  sleep 0.2  # let the log filter drain
  cat "$out.results.txt"
  echo "(finished in $((SECONDS - start)) s; full log in $out.log)"
  if [ "$rc" -ne 0 ]; then
    echo "kforge run failed (exit $rc); see $out.log" >&2
    return "$rc"
  fi
  record_load "$out.results.txt"
  note "The table is kforge results: every task passed. STEPS is 3 for a first-time success" \
       "(designer, coder, verifier) and 5 after one fix: 26_gelu's first kernel used the tanh" \
       "approximation (a precision mismatch against the exact GELU), 40_layernorm's kept a" \
       "torch fallback (rejected by rule). SPEEDUP is torch's median time over the kernel's, single-threaded; above 10x" \
       "(12_matmul_with_diagonal_matrices: torch builds the N x N matrix) the report flags it." \
       "kforge show TASK --data $out tells one task's story, prompts and answers included."
  echo "\$ kforge report 1 --data $out --out $out/report"
  "$kforge" report 1 --data "$out" --out "$out/report"
  report_summary "$out/report/report.json"
  note "Open $out/report/index.html in a browser. With a model of your own instead of the" \
       "recording: docs/llm.md, \"A local model server\"."
}

campaign_demo() {
  local out=demo-out/campaign
  rm -rf "$out"
  mkdir -p demo-out

  say "part 2: a kernel-generation campaign (examples/demo/campaign.toml)"
  note "12 tasks: vector_add, relu, softmax, row_sum, layernorm and gelu, each at two shapes" \
       "(a sweep over N), written as C++ for this CPU and called from Python through ctypes." \
       "For every task the Conductor asks the Designer for an AUL sketch, the Coder for a" \
       "candidate, and the Verifier (a sandboxed harness job) to compile it, compare it with" \
       "the torch reference on 3 seeds, then time both. The LLM answers are replayed from" \
       "examples/demo/recording.jsonl: no model server, same answers every run; the compiling," \
       "checking and timing are real." \
       "" \
       "Below: the Conductor's log: a verify job per candidate, its decision after a failed" \
       "verification, each task's outcome."
  echo
  local start=$SECONDS
  # The log is on stderr; keep the Conductor's lines and the progress, drop the plumbing.
  local rc=0
  # (The process substitution comes first so that its output goes to the terminal.)
  # Debug level: the Conductor logs each decision ("fix_code after 3 steps").
  "$kforge" run examples/demo/campaign.toml --data "$out" --config examples/demo/kforge.toml --log-level debug \
      2> >(tee "$out.log" | grep --line-buffered -E 'verify job|fix_(code|design) after|task [0-9]+ (passed|failed)|tasks done' \
           | sed -u -E 's/^[0-9T:.-]+Z [a-z]+ kforge: /  /; s/ passed: passed$/ passed/;
                        s/: (fix_[a-z]+) after [0-9]+ steps$/: verification failed; the Conductor chooses \1/') \
      >"$out.table" || rc=$?
  sleep 0.2  # let the log filter drain
  echo "(finished in $((SECONDS - start)) s; full log in $out.log)"
  if [ "$rc" -ne 0 ]; then
    cat "$out.table"
    echo "kforge run failed (exit $rc); see $out.log" >&2
    return "$rc"
  fi

  say "kforge results --data $out"
  "$kforge" results --data "$out" | tee "$out.results.txt"
  record_load "$out.results.txt"
  note "STEPS counts Designer, Coder and Verifier runs (limit_steps = 6). SPEEDUP is the torch" \
       "reference's median time over the candidate's, both single-threaded on this CPU: the" \
       "fused gelu and the vectorised softmax beat eager torch; a plain add or relu cannot" \
       "(torch's kernels already stream at memory speed, and a ctypes call costs a few us)."

  say "kforge report 1 --data $out --out $out/report"
  "$kforge" report 1 --data "$out" --out "$out/report"
  report_summary "$out/report/report.json"
  note "Open $out/report/index.html in a browser: the per-op table, speedup and steps plots." \
       "kforge show TASK --data $out tells one task's story; kforge export writes every step as a file."

  say "the fix loop: every task's steps, as the Conductor recorded them"
  /usr/bin/python3 - "$out/kforge.db" <<'PY'
import json, re, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute("SELECT t.id, t.op_name, t.task_id, s.role, s.verdict, s.output "
                  "FROM steps s JOIN tasks t ON t.id = s.task_id ORDER BY t.id, s.seq").fetchall()
tasks = {}
for tid, op, variant, role, verdict, output in rows:
    tasks.setdefault((tid, f"{op}/{variant}"), []).append((role, verdict, output))
for (tid, name), steps in tasks.items():
    chain = " -> ".join(r if r != "verifier" else f"verifier:{v}" for r, v, _ in steps)
    print(f"  {name:<22} {chain}")
    for role, verdict, output in steps:
        if role == "verifier" and verdict != "passed":
            doc = json.loads(output)
            lines = [l.strip() for l in doc.get("message", "").splitlines() if l.strip()]
            # The line a model acts on: the compiler's error, the rule, or the comparison.
            key = next((l for l in lines if "error:" in l), None) or \
                next((l for l in lines if l.startswith("[")), None) or (lines[0] if lines else "")
            key = re.sub(r"/\S*/", "", key).split("; over the elements")[0]  # no job paths
            print(f"  {'':<22}   {verdict}: {key[:140]}")
PY
  note "" \
       "Reading the chains: designer -> coder -> verifier:passed is a first-try success (8 of 12)." \
       "When the Verifier fails a candidate, the Conductor's rules (no conductor model is" \
       "configured) choose fix_code: the Coder is asked again, given its previous code and" \
       "the Verifier's message (replay key <op>/<task_id>/coder/2). A second precision" \
       "mismatch since the design, or a failure after two code fixes, would send the task" \
       "back to the Designer (fix_design) instead." \
       "  vector_add N=100003   the same kernel passed at N=65536; N=100003 is not a multiple" \
       "                        of its 16-float block, the tail stayed unwritten (NaN poison)" \
       "  softmax N=1000        exp(x) without subtracting the row max overflows: inf/inf = NaN" \
       "  row_sum N=4096        a missing semicolon: the compiler's message goes to the Coder" \
       "  layernorm N=1024      a 'just in case' torch.layer_norm fallback: rejected by rule," \
       "                        even on a path these inputs never take"
}

cluster_demo() {
  local out=demo-out/cluster
  rm -rf "$out"
  mkdir -p "$out"
  cat > "$out/kforge.toml" <<TOML
[coordinator]
listen = "tcp://127.0.0.1:*"
data_dir = "$out/data"
http_listen = "127.0.0.1:0"
heartbeat_ms = 300
restart_grace_ms = 1000

[log]
level = "info"
TOML

  pids=()  # global: the EXIT trap reads it after this function returns
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
  trap cleanup EXIT
  count() { "$kforge" jobs --data "$out/data" --state "$1" | tail -n +2 | wc -l; }

  say "part 3: the distributed core (a coordinator and two agents as processes)"
  "$bin/coordinator/kforge-coordinator" --config "$out/kforge.toml" >"$out/coordinator.out" 2>"$out/coordinator.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^listening' "$out/coordinator.out" 2>/dev/null && break; sleep 0.1; done
  local endpoint
  endpoint=$(awk '/^listening/ {print $2}' "$out/coordinator.out")
  [ -n "$endpoint" ] || { echo "coordinator did not start; see $out/coordinator.log" >&2; exit 1; }
  echo "coordinator on $endpoint (data in $out/data)"

  say "queueing 40 jobs, and one that hangs (killed at its 2 s timeout, group and all)"
  "$kforge" enqueue --data "$out/data" --count 40 -- \
    sh -c 'sleep 0.2; echo "job $KFORGE_JOB_ID ran on $KFORGE_DEVICE"'
  "$kforge" enqueue --data "$out/data" --timeout 2 -- sh -c 'sleep 600 & sleep 600'

  say "starting two agents with two CPU devices each"
  local name
  for name in alpha beta; do
    "$bin/agent/kforge-agent" --coordinator "$endpoint" --state "$out/agent-$name" --cpu-devices 2 \
      --no-probe --device-fixtures "$out/no-gpus" 2>"$out/agent-$name.log" &
    pids+=($!)
  done
  local alpha=${pids[1]}

  for _ in $(seq 300); do [ "$(count done)" -ge 12 ] && break; sleep 0.1; done
  say "killing agent alpha with SIGKILL while jobs run on it"
  { kill -9 "$alpha"; wait "$alpha"; } 2>/dev/null || true
  echo "done so far: $(count done) of 41; the coordinator notices the silence and re-queues"

  for _ in $(seq 600); do [ "$(count done)" -ge 41 ] && break; sleep 0.1; done

  local api
  api=$(awk '/^api/ {print $2}' "$out/coordinator.out")
  say "agents (kforge agents --coordinator $api: the operator API, with the token the coordinator created in $out/data/api.token, found through --config's data_dir; \`kforge dashboard --config $out/kforge.toml --coordinator $api\` prints the dashboard's URL)"
  "$kforge" agents --coordinator "$api" --config "$out/kforge.toml"
  say "jobs that needed a second attempt, and the one that timed out"
  "$kforge" jobs --data "$out/data" --state done >"$out/jobs.txt"
  awk 'NR == 1 || $4 > 1 || /timed out/' "$out/jobs.txt"
  say "what the coordinator logged about the lost agent"
  grep -E 'lost|requeue' "$out/coordinator.log" | head -n 5 || true

  local done_jobs
  done_jobs=$(count done)
  say "result: $done_jobs of 41 jobs done, each recorded exactly once"
  echo "logs and state are in $out/"
  [ "$done_jobs" -eq 41 ]
}

case "$parts" in
  all) first_demo; campaign_demo; cluster_demo ;;
  first) first_demo ;;
  campaign) campaign_demo ;;
  cluster) cluster_demo ;;
esac
