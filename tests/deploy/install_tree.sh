#!/bin/bash
# `cmake --install` into a temporary prefix: the files are where docs/deploy.md says, and the
# installed programs find the installed harness and prompts by themselves (relative to their
# own binary, no configuration) rather than the source tree's.
#
#   tests/deploy/install_tree.sh CMAKE BUILD_DIR SOURCE_DIR
set -euo pipefail
cmake=${1:?usage: install_tree.sh CMAKE BUILD_DIR SOURCE_DIR}
build=${2:?usage: install_tree.sh CMAKE BUILD_DIR SOURCE_DIR}
src=${3:?usage: install_tree.sh CMAKE BUILD_DIR SOURCE_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }
unset KFORGE_HARNESS_DIR KFORGE_PROMPT_DIR  # the lookups under test come after these

tmp=$(mktemp -d)
chmod 0755 "$tmp"  # as /usr/local is: jobs run as another user (nobody, when root) read the harness
coordinator= agent=
trap 'for p in $coordinator $agent; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "cmake --install $build --prefix $prefix (build everything first)"; }

# --- the tree
for f in bin/kforge bin/kforge-coordinator bin/kforge-agent share/kforge/slurm/kforge-agents.sbatch; do
  [ -x "$prefix/$f" ] || fail "$prefix/$f is missing or not executable"
done
for f in share/kforge/harness/kforge_judge.py share/kforge/harness/kforge_worker.py \
         share/kforge/harness/kforge_harness.py share/kforge/harness/kforge_cpp.py \
         share/kforge/prompts/designer.md share/kforge/prompts/coder.md \
         lib/systemd/system/kforge-coordinator.service lib/systemd/system/kforge-agent.service \
         lib/sysusers.d/kforge.conf \
         share/kforge/examples/kforge.toml share/kforge/examples/deploy/coordinator.toml \
         share/kforge/examples/deploy/agent.toml share/kforge/examples/demo/campaign.toml \
         share/doc/kforge/README.md share/doc/kforge/docs/deploy.md \
         share/doc/kforge/docs/configuration.md share/doc/kforge/schema/api.md \
         share/doc/kforge/systemd/README.md share/kforge/python/kforge_client/__init__.py; do
  [ -f "$prefix/$f" ] || fail "$prefix/$f was not installed"
done
# The harness's Python package, whole, and none of its tests or byte-code.
(cd "$src/agent/harness" && find . -name '*.py' -not -path '*/tests/*' -not -path '*/__pycache__/*' | sort) > "$tmp/harness.src"
(cd "$prefix/share/kforge/harness" && find . -name '*.py' | sort) > "$tmp/harness.installed"
diff "$tmp/harness.src" "$tmp/harness.installed" > "$tmp/harness.diff" ||
  fail "installed harness differs from agent/harness: $(cat "$tmp/harness.diff")"
[ -z "$(find "$prefix" -name __pycache__)" ] || fail "byte-code was installed: $(find "$prefix" -name __pycache__)"

"$prefix/bin/kforge-agent" --help > "$tmp/help" || fail "installed kforge-agent --help failed"
grep -q -- "--coordinator" "$tmp/help" || fail "kforge-agent --help does not list --coordinator: $(cat "$tmp/help")"

# --- the installed agent finds the installed harness with no configuration (it names the
# one it found at start-up; no coordinator needed)
mkdir "$tmp/agent"
mkfifo "$tmp/agent/log"
exec 4<> "$tmp/agent/log"
TMPDIR=$tmp/agent "$prefix/bin/kforge-agent" --coordinator "ipc://$tmp/agent/no-coordinator" \
  --state "$tmp/agent/state" --cpu-devices 1 --no-probe 2>&4 &  # TMPDIR: its work root
agent=$!
said= seen=
while read -r -t 30 -u 4 line; do  # up to its first hello: its SIGTERM handler is set by then
  seen+="$line"$'\n'
  case $line in
    *"verification harness"*|*kforge_judge.py*) said=$line ;;
    *"hello to "*) break ;;
  esac
done
kill -TERM "$agent" 2>/dev/null || fail "the installed agent exited early; it said: $seen"
wait "$agent" || fail "the installed agent did not stop cleanly on SIGTERM; it said: $seen"
agent=
exec 4<&-
[[ $said == *"verification harness $(realpath "$prefix")/share/kforge/harness" ]] ||
  fail "the installed agent did not find $prefix/share/kforge/harness; it said: ${said:-nothing about the harness}"

# --- the installed kforge verify runs a candidate through the installed harness
corpus=$src/tests/harness
verify() {  # PREFIX: kforge verify of a small passing numpy + C++ candidate
  "$1/bin/kforge" verify --json --task "$corpus/tasks/matmul_numpy.py" \
    --candidate "$corpus/candidates/matmul_numpy_cpp_ok.py" --op-name matmul \
    --impl-type cpp --framework numpy --timeout 120
}
verify "$prefix" > "$tmp/verify.json" 2> "$tmp/verify.err" ||
  fail "installed kforge verify failed: $(cat "$tmp/verify.err")"
grep -q '"verdict": "passed"' "$tmp/verify.json" || fail "installed kforge verify did not pass the candidate: $(cat "$tmp/verify.json")"

# ... and it was the installed harness, not the source tree's: a copy of the tree whose harness
# only announces itself is the one that answers.
cp -a "$prefix" "$tmp/marked"
printf 'import sys\nsys.stderr.write("installed-harness-%s\\n")\nsys.exit(3)\n' "$$" \
  > "$tmp/marked/share/kforge/harness/kforge_judge.py"
verify "$tmp/marked" > "$tmp/marked.out" 2>&1 || true
grep -q "installed-harness-$$" "$tmp/marked.out" ||
  fail "kforge verify from $tmp/marked/bin did not use $tmp/marked/share/kforge/harness: $(cat "$tmp/marked.out")"

# --- the installed coordinator starts with the installed prompts (the "listening" line comes
# after they are loaded), and it is those prompts it reads.
mkdir "$tmp/run"
printf '[coordinator]\nhttp_listen = "127.0.0.1:0"\n' > "$tmp/run/kforge.toml"
start_coordinator() {  # PREFIX: in the background; $coordinator is its pid, its stdout on fd 3
  mkfifo "$tmp/run/out.$$"
  exec 3<> "$tmp/run/out.$$"
  "$1/bin/kforge-coordinator" --config "$tmp/run/kforge.toml" \
    --listen 'tcp://127.0.0.1:*' --data "$tmp/run/data" >&3 2> "$tmp/run/err" &
  coordinator=$!
  rm "$tmp/run/out.$$"
}
start_coordinator "$prefix"
read -r -t 30 -u 3 line || fail "the installed coordinator did not start: $(cat "$tmp/run/err")"
[[ $line == "listening tcp://127.0.0.1:"* ]] || fail "unexpected first line from the coordinator: $line"
kill -TERM "$coordinator" 2>/dev/null || fail "the installed coordinator exited early: $(cat "$tmp/run/err")"
wait "$coordinator" || fail "the installed coordinator did not stop cleanly on SIGTERM: $(cat "$tmp/run/err")"
coordinator=
exec 3<&-

rm "$tmp/marked/share/kforge/prompts/coder.md"
if timeout 60 "$tmp/marked/bin/kforge-coordinator" --config "$tmp/run/kforge.toml" \
     --listen 'tcp://127.0.0.1:*' --data "$tmp/run/marked-data" > /dev/null 2> "$tmp/run/marked.err"; then
  fail "a coordinator whose installed prompts lack coder.md started (it read the source tree's)"
fi
grep -q "$tmp/marked/share/kforge/prompts.* lacks coder.md" "$tmp/run/marked.err" ||
  fail "kforge-coordinator from $tmp/marked/bin did not read $tmp/marked/share/kforge/prompts: $(cat "$tmp/run/marked.err")"

echo "install tree: ok ($prefix)"
