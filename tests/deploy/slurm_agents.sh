#!/bin/bash
# scripts/slurm/kforge-agents.sbatch without Slurm: a fake srun on PATH records its options and
# runs the per-node command here, once, with the variables slurmd sets; a fake agent records
# its command line and reports the SIGTERM that Slurm sends at the end of a job.
#
#   tests/deploy/slurm_agents.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: slurm_agents.sh SOURCE_DIR}
script=$src/scripts/slurm/kforge-agents.sbatch
tmp=$(mktemp -d)
batch=
trap '[ -z "$batch" ] || kill "$batch" 2>/dev/null || true; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

bash -n "$script" || fail "bash -n $script"

mkdir -p "$tmp/bin" "$tmp/state"
# srun: options up to the first word that is not one, then that command in place of srun
# (exec, as the task process slurmstepd starts and signals).
cat > "$tmp/bin/srun" <<'EOF'
#!/bin/bash
: > "$FAKE_DIR/srun-options"
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do echo "$1" >> "$FAKE_DIR/srun-options"; shift; done
export SLURMD_NODENAME=gpu007 SLURM_NODEID=0 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_STEP_ID=0
exec "$@"
EOF
# kforge-agent: its argv one per line, "ready" once its SIGTERM handler is set, then waits.
cat > "$tmp/bin/fake-agent" <<'EOF'
#!/bin/bash
printf '%s\n' "$@" > "$FAKE_DIR/agent-argv"
trap 'echo TERM > "$FAKE_DIR/agent-signal"; kill "$idle" 2>/dev/null; exit 0' TERM
sleep infinity & idle=$!
echo ready > "$FAKE_DIR/ready"
wait "$idle"
EOF
chmod +x "$tmp/bin/srun" "$tmp/bin/fake-agent"
mkfifo "$tmp/ready"

# The batch script with the environment sbatch gives it and "$@" as its arguments. It execs,
# so call it in a subshell ($(...) or &): the background job's pid is then the script's.
run_batch() {
  exec env -u KFORGE_COORDINATOR -u KFORGE_CONFIG -u KFORGE_CPU_DEVICES -u KFORGE_KEY_DIR -u KFORGE_COORDINATOR_KEY PATH="$tmp/bin:$PATH" FAKE_DIR="$tmp" SLURM_JOB_ID=4242 SLURM_JOB_NUM_NODES=3 \
      KFORGE_AGENT="$tmp/bin/fake-agent" KFORGE_STATE_ROOT="$tmp/state" "${extra_env[@]}" \
      bash "$script" "$@"
}

# --- mistakes are refused with a message that says what to do
extra_env=()
if out=$(run_batch 2>&1); then fail "ran without a coordinator"; fi
grep -q "KFORGE_COORDINATOR" <<<"$out" || fail "no-coordinator message does not name KFORGE_COORDINATOR: $out"
if out=$(run_batch coordinator.example:7700 2>&1); then fail "accepted an endpoint without tcp://"; fi
grep -q "tcp://HOST:PORT" <<<"$out" || fail "bad-endpoint message does not show the form: $out"
if out=$(env -u SLURM_JOB_ID bash "$script" tcp://c:7700 2>&1); then fail "ran outside Slurm"; fi
grep -q "sbatch" <<<"$out" || fail "outside-Slurm message does not mention sbatch: $out"

# --- the endpoint from the environment; the agent gets it, a node-local state dir, no CPU slots
extra_env=(KFORGE_COORDINATOR=tcp://coord.example:7700)
run_batch 2> "$tmp/batch.err" &
batch=$!
read -r -t 30 line <> "$tmp/ready" || { cat "$tmp/batch.err" >&2; fail "the agent did not start"; }
kill -TERM "$batch"  # what Slurm does at the end of the job
wait "$batch" || fail "the job step did not end cleanly after SIGTERM (status $?)"
[ "$(cat "$tmp/agent-signal" 2>/dev/null)" = TERM ] || fail "the agent itself did not receive SIGTERM"

state="$tmp/state/kforge-agent-4242-gpu007"
expected=$(printf '%s\n' --coordinator tcp://coord.example:7700 --state "$state" --cpu-devices 0)
[ "$(cat "$tmp/agent-argv")" = "$expected" ] ||
  fail "agent command line: got
$(cat "$tmp/agent-argv")
expected
$expected"
[ -d "$state" ] || fail "state directory $state was not created"
[ "$(stat -c %a "$state")" = 700 ] || fail "state directory $state is not private (mode $(stat -c %a "$state"))"
for opt in --ntasks-per-node=1 --nodes=3 --ntasks=3; do
  grep -qx -- "$opt" "$tmp/srun-options" || fail "srun was not given $opt: $(tr '\n' ' ' < "$tmp/srun-options")"
done

# --- the endpoint as the first argument wins; KFORGE_CONFIG and KFORGE_CPU_DEVICES pass through
touch "$tmp/kforge.toml"
extra_env=(KFORGE_COORDINATOR=tcp://other:1 KFORGE_CONFIG="$tmp/kforge.toml" KFORGE_CPU_DEVICES=4)
run_batch tcp://10.0.0.5:7700 2> "$tmp/batch.err" &
batch=$!
read -r -t 30 line <> "$tmp/ready" || { cat "$tmp/batch.err" >&2; fail "the agent did not start (second run)"; }
kill -TERM "$batch"
wait "$batch" || fail "second run did not end cleanly after SIGTERM"
expected=$(printf '%s\n' --config "$tmp/kforge.toml" --coordinator tcp://10.0.0.5:7700 --state "$state" --cpu-devices 4)
[ "$(cat "$tmp/agent-argv")" = "$expected" ] ||
  fail "agent command line (argument, config): got
$(cat "$tmp/agent-argv")
expected
$expected"

# --- KFORGE_KEY_DIR: each node registers as itself with its own key; a node without one is named
mkdir -p "$tmp/keys"
touch "$tmp/keys/gpu007.key"
ckey='rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'
extra_env=(KFORGE_COORDINATOR=tcp://coord.example:7700 KFORGE_KEY_DIR="$tmp/keys" KFORGE_COORDINATOR_KEY="$ckey")
run_batch 2> "$tmp/batch.err" &
batch=$!
read -r -t 30 line <> "$tmp/ready" || { cat "$tmp/batch.err" >&2; fail "the agent did not start (keys)"; }
kill -TERM "$batch"
wait "$batch" || fail "the keys run did not end cleanly after SIGTERM"
expected=$(printf '%s\n' --coordinator tcp://coord.example:7700 --state "$state" --cpu-devices 0 \
  --coordinator-key "$ckey" --id gpu007 --secret-key-file "$tmp/keys/gpu007.key")
[ "$(cat "$tmp/agent-argv")" = "$expected" ] ||
  fail "agent command line (keys): got
$(cat "$tmp/agent-argv")
expected
$expected"
rm "$tmp/keys/gpu007.key"
if out=$(run_batch 2>&1); then fail "ran without the node's key"; fi
grep -q "no key $tmp/keys/gpu007.key for gpu007" <<<"$out" || fail "missing-key message does not name the node: $out"

# --- an agent missing on a node is named
extra_env=(KFORGE_COORDINATOR=tcp://coord.example:7700 KFORGE_AGENT=/nonexistent/kforge-agent)
if out=$(run_batch 2>&1); then fail "ran without an agent executable"; fi
grep -q "not found on gpu007" <<<"$out" || fail "missing-agent message does not name the node: $out"

echo "kforge-agents.sbatch: ok"
