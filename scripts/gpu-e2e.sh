#!/usr/bin/env bash
# The GPU end-to-end run (docs/gpu-validation.md): kforge-coordinator and kforge-agent as
# separate processes on a CUDA host, the campaign examples/gpu submitted with kforge submit,
# every verdict compared with examples/gpu/expected.json.
#
#   scripts/gpu-e2e.sh bundle DIR       # here (where kforge is built): DIR = binaries + libs
#   scripts/gpu-e2e.sh run DIR OUT      # on the CUDA host: run the campaign, results in OUT
#   scripts/gpu-e2e.sh multi DIR OUT    # on a host with several GPUs: sweep.toml on one GPU
#                                       # for a while, then on all of them (below)
#   scripts/gpu-e2e.sh smoke DIR OUT    # anywhere: run's path with the CPU demo campaign
#   scripts/gpu-e2e.sh multi-smoke DIR OUT  # anywhere: multi's path, the demo on 1 then 2 CPUs
#   scripts/gpu-e2e.sh search DIR OUT   # on the CUDA host: examples/gpu-search, fix_loop vs
#                                       # evolve vs best_of_n at equal device budget (below)
#   scripts/gpu-e2e.sh search-smoke DIR OUT  # anywhere: search's path on a CPU; the scripted
#                                       # Coder answers and the campaigns are submitted, but
#                                       # no verify job runs (Triton needs a GPU): plumbing only
#
# bundle copies build/{coordinator,agent,cli}'s three programs (stripped) and every shared
# library they load, glibc and its dynamic loader included, so that they run on any x86_64
# Linux whatever its own glibc and without ZeroMQ installed: DIR/bin/<program> is a wrapper
# that runs DIR/libexec/<program> through DIR/lib/ld-linux-x86-64.so.2 --library-path DIR/lib
# (nothing else sees that library path: the jobs' Python is the host's own). It adds the
# harness, the prompts and examples/{gpu,demo} under DIR/share/kforge, checks the size (the
# device tool carries at most 64 MiB of ignored paths) and runs each wrapper once.
#
# run needs nvidia-smi and a Python with torch (CUDA) and triton: $KFORGE_GPU_PYTHON, else the
# first of python3 on PATH, /opt/torch/.venv/bin/python, /usr/bin/python3 that has them. It
# works in WORK ($KFORGE_E2E_WORK, default ${TMPDIR:-/tmp}/kforge-gpu-e2e.<pid>): data, agent
# state, versions.json and env.txt (GPU, driver, CUDA, torch, triton), the logs, results.json,
# tasks/<id>.json (kforge show --json --full), jobs.json, agents.json, metrics.txt, report/,
# export/, and summary.md / summary.json from check_results.py: every verification's verdict
# against expected.json, speedups, the harness overhead per job. OUT gets seven files (the
# device tool brings back at most 8, none deeper than two folders): summary.md,
# summary.json, results.json, versions.json, env.txt, gpu-e2e.log and gpu-e2e.tar.gz (all of
# WORK but the job directories). Exit status 0 only when every verdict is the expected one.
# Everything is bounded by KFORGE_E2E_DEADLINE_S (default 540 s, under the device tool's 600).
#
# multi runs examples/gpu/sweep.toml twice, each time with a fresh coordinator and agent:
# in WORK/one-device with the agent given --devices cuda:0 for KFORGE_E2E_BASELINE_S seconds
# (default 150; what finished by then is the baseline, the rest is cancelled; with
# KFORGE_E2E_BASELINE_JOBS=N it is cut as soon as N jobs are done instead, so that a loaded
# host still gets a baseline), then in
# WORK/all-devices with every GPU to the end. check_results.py compares all-devices' verdicts
# with sweep-expected.json, checks every job that ran beside a crash or a hang, and gives
# each GPU's utilisation (busy over the device window) and jobs per minute against the
# baseline. OUT gets the same seven files (summary and results of all-devices).
#
# search runs examples/gpu-search/campaign.toml once per strategy (KFORGE_SEARCH_STRATEGIES,
# default "fix_loop evolve best_of_n", in that order), with search/<strategy>.toml appended,
# each with a fresh coordinator and agent in WORK/<strategy>. The Coder is the scripted
# OpenAI-compatible server examples/gpu-search/coder_server.py on 127.0.0.1 (started once, run
# by the jobs' Python; its answers in WORK/coder-server.jsonl): real Triton variants, so the
# speeds are real. Every strategy gets the same per-task budget, max_device_seconds =
# KFORGE_SEARCH_DEVICE_S (default 20), and a campaign wall budget, campaign_max_wall_s =
# KFORGE_SEARCH_WALL_S (default 170) or what the deadline leaves (a strategy with under 30 s
# left is skipped). examples/gpu-search/compare.py writes summary.md / summary.json: each
# strategy's winners, their geomean speedup and its ratio to fix_loop's, each campaign's device
# utilisation, every variant's measured speedups. Exit status 0 when fix_loop and evolve ran.
#
# Environment: KFORGE_GPU_PYTHON (the jobs' interpreter), KFORGE_E2E_DEADLINE_S,
# KFORGE_GPU_VERIFY_TIMEOUT_S (each verify job's limit, default 60: the hang's job ends
# there), KFORGE_GPU_ARCH (the campaign's arch; default: what the agent reports),
# KFORGE_E2E_BASELINE_S, KFORGE_E2E_CPU_DEVICES (multi-smoke's second run, default 2),
# KFORGE_E2E_LLM_LATENCY_MS (each replayed answer that long after it gets a slot, default 0:
# the devices' use under a slow LLM; docs/llm.md "Simulated latency"), KFORGE_E2E_LLM_CONCURRENCY
# (the replayed roles' requests in flight, default 4; search: the scripted Coder's, default 16),
# KFORGE_SEARCH_STRATEGIES, KFORGE_SEARCH_DEVICE_S, KFORGE_SEARCH_WALL_S (search, above).
set -uo pipefail

die() { echo "gpu-e2e: $*" >&2; exit 1; }
say() { echo "gpu-e2e: $*" >&2; }

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# --- bundle -------------------------------------------------------------------------------
bundle() {
  local out=${1:?usage: gpu-e2e.sh bundle DIR}
  local root build
  root=$(repo_root)
  build=${KFORGE_BUILD_DIR:-$root/build}
  local progs=("$build/coordinator/kforge-coordinator" "$build/agent/kforge-agent" "$build/cli/kforge")
  for p in "${progs[@]}"; do
    [[ -x $p ]] || die "$p is not built: cmake --build build --target kforge kforge-coordinator kforge-agent"
  done
  # The verifier and scale benchmarks (bench/verifier.cpp, bench/scale.cpp) ride along when built.
  local b
  for b in kforge-bench-verifier kforge-bench-scale; do
    [[ -x $build/bench/$b ]] || continue
    # The benches are not in the default target: one linked before the agent's library was
    # last built carries old code (its own copy of the Verifier).
    [[ $build/bench/$b -ot $build/agent/libkforge_agent.a ]] &&
      die "$build/bench/$b is older than the agent's library: cmake --build build --target benches"
    progs+=("$build/bench/$b")
  done
  [[ $(uname -m) == x86_64 ]] || die "bundle: made for x86_64 (this is $(uname -m))"
  rm -rf "$out"
  mkdir -p "$out/bin" "$out/libexec" "$out/lib" "$out/share/kforge/examples" || die "cannot create $out"
  out=$(cd "$out" && pwd)

  local loader=""
  for p in "${progs[@]}"; do
    local name
    name=$(basename "$p")
    strip --strip-unneeded -o "$out/libexec/$name" "$p" || die "strip $p failed"
    # ldd lines: "libzmq.so.5 => /lib/x86_64-linux-gnu/libzmq.so.5 (0x...)" and the loader,
    # "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
    while read -r lib arrow path _; do
      if [[ $arrow == "=>" && $path == /* ]]; then
        [[ -e $out/lib/$lib ]] || cp -L "$path" "$out/lib/$lib" || die "cannot copy $path"
      elif [[ $lib == */ld-linux* ]]; then
        loader=$lib
      elif [[ $arrow == "=>" && $path == "not" ]]; then
        die "$p: $lib is not found (ldd says 'not found')"
      fi
    done < <(ldd "$p")
  done
  [[ -n $loader ]] || die "ldd named no dynamic loader"
  cp -L "$loader" "$out/lib/ld-linux-x86-64.so.2" || die "cannot copy $loader"
  strip --strip-unneeded "$out"/lib/*.so* 2>/dev/null || true
  chmod 755 "$out/lib/ld-linux-x86-64.so.2"

  for p in "${progs[@]}"; do
    local name
    name=$(basename "$p")
    cat > "$out/bin/$name" <<EOF
#!/bin/sh
# $name from the kforge bundle, run through the bundled glibc (scripts/gpu-e2e.sh bundle).
here=\$(cd "\$(dirname "\$0")/.." && pwd)
exec "\$here/lib/ld-linux-x86-64.so.2" --library-path "\$here/lib" --argv0 "\$0" "\$here/libexec/$name" "\$@"
EOF
    chmod 755 "$out/bin/$name"
  done

  # What the programs find at <bin>/../share/kforge (the loader is /proc/self/exe, in lib/).
  cp -r "$root/agent/harness" "$out/share/kforge/harness"
  cp -r "$root/prompts" "$out/share/kforge/prompts"
  cp -r "$root/examples/gpu" "$out/share/kforge/examples/gpu"
  cp -r "$root/examples/demo" "$out/share/kforge/examples/demo"
  cp -r "$root/examples/gpu-search" "$out/share/kforge/examples/gpu-search"
  find "$out/share" -name __pycache__ -type d -prune -exec rm -rf {} +
  cp "$root/scripts/gpu-e2e.sh" "$out/gpu-e2e.sh"
  {
    echo "kforge bundle made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
    echo "commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "glibc $(ldd --version | head -1)"
    echo "libraries:"
    (cd "$out/lib" && ls)
  } > "$out/BUNDLE.txt"

  local bytes
  bytes=$(du -sb "$out" | cut -f1)
  say "bundle $out: $((bytes / 1024 / 1024)) MiB ($bytes bytes), $(ls "$out/lib" | wc -l) libraries"
  (( bytes < 60 * 1024 * 1024 )) || die "bundle is $bytes bytes: the device tool carries at most 64 MiB"
  for name in kforge kforge-coordinator kforge-agent; do
    "$out/bin/$name" --help > /dev/null || die "$out/bin/$name --help fails through the bundled loader"
  done
  "$out/bin/kforge" version || die "$out/bin/kforge version fails"
  say "bundle ok: every program runs through $out/lib/ld-linux-x86-64.so.2"
}

# --- run ----------------------------------------------------------------------------------
T0=$(date +%s)
deadline_s() { echo $(( ${KFORGE_E2E_DEADLINE_S:-540} - ($(date +%s) - T0) )); }

COORD_PID=""
AGENT_PID=""
CODER_PID=""
CODER_URL=""
WORK=""
DEST=""
# OUT gets what the device tool can bring back: a few files and one tarball of WORK.
package() {
  [[ -n $WORK && -n $DEST && -d $WORK ]] || return 0
  for f in summary.md summary.json results.json versions.json env.txt; do
    [[ -f $WORK/$f ]] && cp "$WORK/$f" "$DEST/$f"
  done
  rm -rf "$WORK/jobs"   # job work directories: inputs, Triton caches (the verdicts are in tasks/)
  tar -czf "$DEST/gpu-e2e.tar.gz" -C "$(dirname "$WORK")" "$(basename "$WORK")" || say "tar failed"
  WORK=""
}
on_exit() {
  stop_all
  stop_coder
  package
}
stop_all() {
  for pid in $AGENT_PID $COORD_PID; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in $AGENT_PID $COORD_PID; do
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  AGENT_PID=""
  COORD_PID=""
}

stop_coder() {
  [[ -n $CODER_PID ]] || return 0
  kill -TERM "$CODER_PID" 2>/dev/null || true
  wait "$CODER_PID" 2>/dev/null || true
  CODER_PID=""
}

# Waits (bounded) until "$1" prints a line matching "$2"; echoes that line's second word.
wait_for_line() {
  local file=$1 pattern=$2 limit=$3
  for _ in $(seq 1 $((limit * 5))); do
    local line
    line=$(grep -m1 "$pattern" "$file" 2>/dev/null) && { echo "$line" | awk '{print $2}'; return 0; }
    sleep 0.2
  done
  return 1
}

find_python() {
  local want=$1 c
  local cands=()
  [[ -n ${KFORGE_GPU_PYTHON:-} ]] && cands+=("$KFORGE_GPU_PYTHON")
  c=$(command -v python3 2>/dev/null) && cands+=("$c")
  cands+=(/opt/torch/.venv/bin/python /usr/bin/python3 /usr/local/bin/python3)
  for c in "${cands[@]}"; do
    [[ -x $c ]] || continue
    if [[ $want == cuda ]]; then
      "$c" -c 'import numpy, torch, triton; assert torch.cuda.is_available()' 2>/dev/null && { echo "$c"; return 0; }
    else
      "$c" -c 'import numpy, torch' 2>/dev/null && { echo "$c"; return 0; }
    fi
  done
  return 1
}

# Mode run/multi/search: the GPU; smoke/multi-smoke/search-smoke: the same path on CPUs.
gpu_mode() { [[ $1 == run || $1 == multi || $1 == search ]]; }

run() {
  local mode=$1 bundle_dir=${2:?usage: gpu-e2e.sh $1 BUNDLE OUT} dest=${3:?usage: gpu-e2e.sh $1 BUNDLE OUT}
  [[ -x $bundle_dir/bin/kforge ]] || die "$bundle_dir/bin/kforge: not a bundle (make one with: scripts/gpu-e2e.sh bundle $bundle_dir)"
  bundle_dir=$(cd "$bundle_dir" && pwd)
  mkdir -p "$dest" || die "cannot create $dest"
  dest=$(cd "$dest" && pwd)
  local out=${KFORGE_E2E_WORK:-${TMPDIR:-/tmp}/kforge-gpu-e2e.$$}
  rm -rf "$out"
  mkdir -p "$out" || die "cannot create $out"
  out=$(cd "$out" && pwd)
  WORK=$out
  DEST=$dest
  BUNDLE=$bundle_dir
  trap on_exit EXIT
  exec > >(tee -a "$dest/gpu-e2e.log") 2>&1
  say "mode $mode, bundle $bundle_dir, work $out, results to $dest, deadline $(deadline_s) s"
  cat "$bundle_dir/BUNDLE.txt" 2>/dev/null | head -2

  # 1. the host
  if gpu_mode "$mode"; then
    command -v nvidia-smi > /dev/null || die "no nvidia-smi on PATH: not a CUDA host"
    PYTHON=$(find_python cuda) || die "no Python with numpy, torch (CUDA available) and triton; set KFORGE_GPU_PYTHON"
  else
    PYTHON=$(find_python cpu) || die "no Python with numpy and torch; set KFORGE_GPU_PYTHON"
  fi
  say "jobs' python: $PYTHON"
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -a)"
    echo "user: $(id)"
    echo "python: $PYTHON"
    echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>} TRITON_CACHE_DIR=${TRITON_CACHE_DIR-<unset>}"
    if gpu_mode "$mode"; then
      echo "--- nvidia-smi"; nvidia-smi 2>&1
      echo "--- nvidia-smi --query-gpu"
      nvidia-smi --query-gpu=index,name,memory.total,uuid,driver_version,compute_cap,mig.mode.current --format=csv 2>&1
      echo "--- what the agent runs"
      nvidia-smi --query-gpu=index,name,memory.total,uuid --format=csv,noheader,nounits 2>&1
      echo "--- nvcc"; (command -v nvcc && nvcc --version) 2>&1 || echo "no nvcc on PATH"
    fi
    echo "--- cpu"; (lscpu 2>/dev/null | head -20) || true
    echo "--- memory"; (free -m 2>/dev/null) || true
  } > "$out/env.txt"
  local backend=cpu
  gpu_mode "$mode" && backend=cuda
  "$PYTHON" - "$out/versions.json" "$backend" <<'PY' || die "cannot record versions"
import json, platform, subprocess, sys
out = {"python": platform.python_version(), "platform": platform.platform()}
import numpy, torch
out.update(numpy=numpy.__version__, torch=torch.__version__, torch_cuda=str(torch.version.cuda))
if sys.argv[2] == "cuda":
    import triton
    out["triton"] = triton.__version__
    out["gpu"] = torch.cuda.get_device_name(0)
    out["gpus"] = torch.cuda.device_count()
    out["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    out["cudnn"] = str(torch.backends.cudnn.version())
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name,memory.total",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        out["nvidia_smi"] = q.stdout.strip()
        out["driver"] = q.stdout.split(",")[0].strip()
    except Exception as e:  # noqa: BLE001
        out["nvidia_smi"] = f"failed: {e}"
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out))
PY
  # Each job compiles its own kernels (HOME = the job directory): no cache shared between
  # jobs, so load_candidate's time includes the Triton compile.
  unset TRITON_CACHE_DIR
  [[ $(id -u) == 0 ]] && say "running as root with agent.contain = false: jobs run as root, unboxed (RLIMIT_NPROC does not bind; see docs/gpu-validation.md)"

  # 2. preflight (GPU modes): one Triton kernel compiled and run in the environment a job
  # gets (the agent keeps only agent.env_allow's variables; HOME is the job directory), so
  # that a host where Triton cannot build its launcher or find libcuda says so in seconds,
  # before a campaign of infra_errors.
  if gpu_mode "$mode"; then
    preflight "$out/preflight" > "$out/preflight.txt" 2>&1
    local pf=$?
    cat "$out/preflight.txt"
    echo "--- preflight (exit $pf)" >> "$out/env.txt"
    cat "$out/preflight.txt" >> "$out/env.txt"
    (( pf == 0 )) || die "preflight failed: Triton cannot compile and run a kernel in a job's environment (preflight.txt above)"
  fi

  local examples=$bundle_dir/share/kforge/examples check rc
  check=$examples/gpu/check_results.py
  case $mode in
    run)
      session "$out" "$examples/gpu" campaign.toml "$(( $(deadline_s) - 45 ))" cuda
      "$PYTHON" "$check" --out "$out" --expected "$examples/gpu/expected.json"
      rc=$? ;;
    smoke)
      session "$out" "$examples/demo" campaign.toml "$(( $(deadline_s) - 45 ))" cpu --cpu-devices 1
      "$PYTHON" "$check" --out "$out"
      rc=$? ;;
    multi|multi-smoke)
      # The same campaign twice: on one device for KFORGE_E2E_BASELINE_S (what finished by
      # then gives the baseline's jobs per minute; the rest is cancelled), then on every
      # device to the end.
      local example=$examples/gpu campaign=sweep.toml one=(--devices cuda:0) all=()
      local expect=(--expected "$examples/gpu/sweep-expected.json")
      if [[ $mode == multi-smoke ]]; then
        example=$examples/demo campaign=campaign.toml expect=()
        one=(--cpu-devices 1) all=(--cpu-devices "${KFORGE_E2E_CPU_DEVICES:-2}")
      fi
      STOP_AFTER_JOBS=${KFORGE_E2E_BASELINE_JOBS:-} \
        session "$out/one-device" "$example" "$campaign" "${KFORGE_E2E_BASELINE_S:-150}" "$backend" "${one[@]}"
      session "$out/all-devices" "$example" "$campaign" "$(( $(deadline_s) - 45 ))" "$backend" "${all[@]}"
      "$PYTHON" "$check" --out "$out/all-devices" "${expect[@]}" --baseline "$out/one-device"
      rc=$?
      for f in summary.md summary.json results.json; do
        [[ -f $out/all-devices/$f ]] && cp "$out/all-devices/$f" "$out/$f"
      done ;;
    search)
      search "$out" "$examples" cuda
      rc=$? ;;
    search-smoke)
      search "$out" "$examples" cpu --cpu-devices 1
      rc=$? ;;
  esac
  package
  say "done in $(( $(date +%s) - T0 )) s; $dest: $(cd "$dest" && ls | tr '\n' ' ')(exit $rc)"
  return $rc
}

# preflight DIR: a vector add in Triton, compiled and checked on GPU 0 with the environment a
# job gets (PATH, LD_LIBRARY_PATH, CUDA_HOME, LANG kept; HOME = DIR; CUDA_VISIBLE_DEVICES=0);
# prints how long the imports, the compile and the first launch took.
preflight() {
  local dir=$1
  mkdir -p "$dir"
  cat > "$dir/preflight.py" <<'PY'
import time
t0 = time.perf_counter()
import torch
import triton
import triton.language as tl
t1 = time.perf_counter()


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)


x = torch.randn(1000003, device="cuda")
y = torch.randn_like(x)
torch.cuda.synchronize()
t2 = time.perf_counter()
out = torch.empty_like(x)
add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel(), BLOCK=1024)
torch.cuda.synchronize()
t3 = time.perf_counter()
add_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, out, x.numel(), BLOCK=1024)
torch.cuda.synchronize()
t4 = time.perf_counter()
assert torch.equal(out, x + y), "the Triton vector add is wrong"
print(f"preflight ok: torch {torch.__version__}, triton {triton.__version__}, {torch.cuda.get_device_name(0)}; "
      f"imports {1000 * (t1 - t0):.0f} ms, CUDA context + inputs {1000 * (t2 - t1):.0f} ms, "
      f"compile + first launch {1000 * (t3 - t2):.0f} ms, second launch {1000 * (t4 - t3):.2f} ms")
PY
  timeout 120 env -i PATH="$PATH" LANG="${LANG:-C.UTF-8}" HOME="$dir"       ${LD_LIBRARY_PATH:+LD_LIBRARY_PATH="$LD_LIBRARY_PATH"} ${CUDA_HOME:+CUDA_HOME="$CUDA_HOME"}       CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0 "$PYTHON" "$dir/preflight.py"
}

# search WORK EXAMPLES BACKEND [AGENT_ARGS...]: examples/gpu-search once per strategy (the
# header says how).
search() {
  local out=$1 examples=$2 backend=$3
  shift 3
  [[ -d $examples/gpu-search ]] || examples=$(repo_root)/examples  # a bundle made before it
  local example=$examples/gpu-search budget=${KFORGE_SEARCH_DEVICE_S:-20} wall=${KFORGE_SEARCH_WALL_S:-170}
  [[ -f $example/coder_server.py ]] || die "no examples/gpu-search in the bundle or the checkout"
  "$PYTHON" "$example/coder_server.py" --pool "$example/variants" --port-file "$out/coder.port" \
      --log "$out/coder-server.jsonl" > "$out/coder-server.out" 2>&1 &
  CODER_PID=$!
  local port=""
  for _ in $(seq 1 100); do
    [[ -s $out/coder.port ]] && { port=$(cat "$out/coder.port"); break; }
    kill -0 "$CODER_PID" 2>/dev/null || break
    sleep 0.2
  done
  [[ -n $port ]] || { cat "$out/coder-server.out"; die "the scripted Coder did not start"; }
  CODER_URL=http://127.0.0.1:$port/v1
  say "scripted Coder at $CODER_URL: $(head -1 "$out/coder-server.out")"
  local strategies=${KFORGE_SEARCH_STRATEGIES:-fix_loop evolve best_of_n} s
  for s in $strategies; do
    [[ -f $example/search/$s.toml ]] || die "no examples/gpu-search/search/$s.toml"
    # What the deadline leaves for this campaign: 60 s to start and collect, 45 s to compare
    # and package at the end.
    local left=$(( $(deadline_s) - 105 )) w=$wall
    (( left < w )) && w=$left
    if (( w < 30 )); then
      say "search: $s skipped, $(deadline_s) s left before the deadline"
      continue
    fi
    local stage=$out/stage/$s
    rm -rf "$stage"
    mkdir -p "$stage" "$out/$s/gpu"
    cp -r "$example/." "$stage/"
    cp -r "$examples/gpu/tasks" "$out/$s/gpu/"  # the campaign's task_desc = ../gpu/tasks/<op>.py
    sed -e "s/^name = \"gpu-search\"/name = \"gpu-search-$s\"/" "$example/campaign.toml" > "$stage/$s.toml"
    sed -e "s/^max_device_seconds = .*/max_device_seconds = $budget/" \
        -e "s/^campaign_max_wall_s = .*/campaign_max_wall_s = $w/" "$example/search/$s.toml" >> "$stage/$s.toml"
    say "search: $s, max_device_seconds = $budget per task, campaign_max_wall_s = $w"
    session "$out/$s" "$stage" "$s.toml" "$(( w + 30 ))" "$backend" "$@"
    "$PYTHON" "$examples/gpu/check_results.py" --out "$out/$s" > "$out/$s/check.txt" 2>&1
    grep -A3 '^## Devices' "$out/$s/summary.md" 2>/dev/null | tail -1
  done
  stop_coder
  "$PYTHON" "$example/compare.py" --out "$out" --strategies "$(echo $strategies | tr ' ' ',')" \
      --device-budget "$budget"
}

# The [llm.*] tables of session's config: the Designer and the Coder replayed from the
# example's recording.jsonl, or (search) asking the scripted Coder at CODER_URL.
llm_tables() {
  local campaign_dir=$1 role
  for role in designer coder; do
    if [[ -n $CODER_URL ]]; then
      cat <<TOML

[llm.$role]
provider = "openai"
base_url = "$CODER_URL"
model = "scripted"
concurrency = ${KFORGE_E2E_LLM_CONCURRENCY:-16}
max_retries = 1
TOML
    else
      cat <<TOML

[llm.$role]
provider = "replay"
recording = "$campaign_dir/recording.jsonl"
replay_latency_ms = ${KFORGE_E2E_LLM_LATENCY_MS:-0}
concurrency = ${KFORGE_E2E_LLM_CONCURRENCY:-4}
TOML
    fi
  done
}

# session DIR EXAMPLE CAMPAIGN LIMIT_S BACKEND [AGENT_ARGS...]: a coordinator and an agent
# (given AGENT_ARGS) working in DIR; EXAMPLE/CAMPAIGN submitted from a copy in DIR/campaign,
# its arch set to the one the agent registered for BACKEND; watched for at most LIMIT_S
# seconds (then cancelled); everything collected in DIR; both processes stopped.
session() {
  local dir=$1 example=$2 campaign_file=$3 limit=$4 backend=$5
  shift 5
  local kf=$BUNDLE/bin/kforge share=$BUNDLE/share/kforge
  mkdir -p "$dir" || die "cannot create $dir"
  local campaign_dir=$dir/campaign
  rm -rf "$campaign_dir"
  cp -r "$example" "$campaign_dir" || die "cannot copy $example"
  local cpu_devices=0 timeout_s=${KFORGE_GPU_VERIFY_TIMEOUT_S:-60}
  [[ $backend == cpu ]] && cpu_devices=1
  cat > "$dir/kforge.toml" <<TOML
# written by scripts/gpu-e2e.sh
[log]
level = "info"

[coordinator]
data_dir = "$dir/data"
verify_timeout_s = $timeout_s

[agent]
state_dir = "$dir/agent"
work_dir = "$WORK/jobs"
cpu_devices = $cpu_devices
contain = false
python = "$PYTHON"
harness_dir = "$share/harness"
job_timeout_s = $timeout_s
TOML
  llm_tables "$campaign_dir" >> "$dir/kforge.toml"

  # 1. coordinator and agent
  "$BUNDLE/bin/kforge-coordinator" --config "$dir/kforge.toml" --listen 'tcp://127.0.0.1:*' \
      --http 127.0.0.1:0 --prompts "$share/prompts" > "$dir/coordinator.out" 2> "$dir/coordinator.log" &
  COORD_PID=$!
  local endpoint url
  endpoint=$(wait_for_line "$dir/coordinator.out" '^listening ' 30) || { tail -20 "$dir/coordinator.log"; die "the coordinator did not start"; }
  url=$(wait_for_line "$dir/coordinator.out" '^api ' 10) || { tail -20 "$dir/coordinator.log"; die "the coordinator serves no API"; }
  say "coordinator pid $COORD_PID: agents $endpoint, API $url"
  export KFORGE_COORDINATOR=$url
  export KFORGE_TOKEN_FILE=$dir/data/api.token  # the coordinator created it at its start
  "$BUNDLE/bin/kforge-agent" --config "$dir/kforge.toml" --coordinator "$endpoint" "$@" \
      > "$dir/agent.out" 2> "$dir/agent.log" &
  AGENT_PID=$!
  say "agent pid $AGENT_PID ($*); waiting for it to register its devices"
  local arch="" devices=0
  for _ in $(seq 1 450); do   # 90 s: the agent's capability probe imports torch and triton
    if "$kf" agents --json > "$dir/agents.json" 2>/dev/null; then
      read -r devices arch < <("$PYTHON" -c '
import json, sys
ds = [d for a in json.load(open(sys.argv[1])) for d in a.get("devices", []) if d.get("backend") == sys.argv[2]]
print(len(ds), ds[0].get("arch", "") if ds else "")' "$dir/agents.json" "$backend")
      [[ -n $arch ]] && break
    fi
    kill -0 "$AGENT_PID" 2>/dev/null || { tail -20 "$dir/agent.log"; die "the agent exited"; }
    sleep 0.2
  done
  [[ -n $arch ]] || { cat "$dir/agents.json"; tail -20 "$dir/agent.log"; die "no $backend device registered within 90 s (nvidia-smi output: env.txt)"; }
  say "agent registered: $devices $backend device(s), arch $arch"

  # 2. the campaign, with the arch the agent reported (jobs are placed by exact arch)
  if [[ $backend == cuda ]]; then
    arch=${KFORGE_GPU_ARCH:-$arch}
    sed -i "s/^arch = \"h100\"/arch = \"$arch\"/" "$campaign_dir/$campaign_file"
    grep -q "^arch = \"$arch\"" "$campaign_dir/$campaign_file" || die "could not set arch $arch in $campaign_dir/$campaign_file"
  fi
  "$kf" submit "$campaign_dir/$campaign_file" | tee "$dir/submit.txt" || die "kforge submit failed"
  local campaign_id
  campaign_id=$(grep -o '(id [0-9]*' "$dir/submit.txt" | head -1 | awk '{print $2}')
  [[ -n $campaign_id ]] || campaign_id=1

  # 3. until it finishes (or the limit: what finished is still collected)
  (( limit > 10 )) || limit=10
  say "watching campaign $campaign_id for at most $limit s${STOP_AFTER_JOBS:+, or until $STOP_AFTER_JOBS jobs are done}"
  local watch_rc=0
  if [[ -n ${STOP_AFTER_JOBS:-} ]]; then
    watch_rc=124
    local t_end=$(( $(date +%s) + limit )) done_jobs=0
    while (( $(date +%s) < t_end )); do
      done_jobs=$("$kf" jobs --state done --json 2>/dev/null | "$PYTHON" -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0)
      (( done_jobs >= STOP_AFTER_JOBS )) && break
      sleep 0.3
    done
    "$kf" status "$campaign_id" > "$dir/status.log" 2>&1
    say "$done_jobs jobs done"
  else
    timeout "$limit" "$kf" status "$campaign_id" --watch > "$dir/status.log" 2>&1
    watch_rc=$?
  fi
  tail -3 "$dir/status.log"
  if (( watch_rc == 124 )); then
    say "the campaign did not finish within $limit s; cancelling it, collecting what finished"
    "$kf" cancel "$campaign_id" > "$dir/cancel.txt" 2>&1
  fi

  # 4. collect
  "$kf" results "$campaign_id" --json > "$dir/results.json" 2> "$dir/results.err"
  "$kf" results "$campaign_id" > "$dir/results.txt" 2>&1
  "$kf" jobs --json > "$dir/jobs.json" 2> "$dir/jobs.err"
  "$kf" agents --json > "$dir/agents.json" 2>/dev/null
  mkdir -p "$dir/tasks"
  for id in $("$PYTHON" -c 'import json,sys; [print(t["task"]) for t in json.load(open(sys.argv[1]))]' "$dir/results.json" 2>/dev/null); do
    "$kf" show "$id" --json --full > "$dir/tasks/$id.json" 2>/dev/null
  done
  "$kf" report "$campaign_id" --out "$dir/report" > "$dir/report.txt" 2>&1
  "$kf" export "$campaign_id" --out "$dir/export" --force > "$dir/export.txt" 2>&1
  "$PYTHON" -c 'import sys, urllib.request; r = urllib.request.Request(sys.argv[1] + "/metrics", headers={"Authorization": "Bearer " + open(sys.argv[2]).read().strip()}); sys.stdout.write(urllib.request.urlopen(r, timeout=10).read().decode())' \
      "$url" "$KFORGE_TOKEN_FILE" > "$dir/metrics.txt" 2>&1
  stop_all
  unset KFORGE_COORDINATOR KFORGE_TOKEN_FILE
}

case ${1:-} in
  bundle) shift; bundle "$@" ;;
  run|smoke|multi|multi-smoke|search|search-smoke) mode=$1; shift; run "$mode" "$@" ;;
  *) sed -n '2,67p' "$0"; exit 2 ;;
esac
