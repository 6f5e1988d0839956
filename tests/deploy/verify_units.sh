#!/bin/bash
# The systemd units and the sysusers entry as `cmake --install` lays them out: installed into a
# temporary prefix, their ExecStart= names the installed binaries, and `systemd-analyze verify`
# accepts them without a word. Needs no running systemd (this runs in containers too).
#
#   tests/deploy/verify_units.sh CMAKE BUILD_DIR
# Exit 77 (skipped) only when systemd-analyze is not installed.
set -euo pipefail
cmake=${1:?usage: verify_units.sh CMAKE BUILD_DIR}
build=${2:?usage: verify_units.sh CMAKE BUILD_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (Debian: apt-get install systemd); the units were not verified"
  exit 77
fi
command -v systemd-sysusers >/dev/null || fail "systemd-sysusers is missing (it comes with systemd-analyze in Debian's systemd package)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
"$cmake" --install "$build" --prefix "$prefix" > "$tmp/install.log" ||
  { cat "$tmp/install.log" >&2; fail "cmake --install $build --prefix $prefix (build everything first)"; }

units=$prefix/lib/systemd/system
for role in coordinator agent; do
  unit=$units/kforge-$role.service
  [ -f "$unit" ] || fail "$unit was not installed"
  # ExecStart= names this prefix's binary and the configuration in /etc/kforge.
  grep -qx "ExecStart=$prefix/bin/kforge-$role --config /etc/kforge/kforge.toml" "$unit" ||
    fail "$unit: ExecStart= does not run $prefix/bin/kforge-$role --config /etc/kforge/kforge.toml: $(grep ExecStart= "$unit")"
  [ -x "$prefix/bin/kforge-$role" ] || fail "$prefix/bin/kforge-$role is not installed"
  ! grep -q /usr/local "$unit" || fail "$unit still names /usr/local: $(grep -n /usr/local "$unit")"
  # The documentation it points at is installed.
  grep '^Documentation=file://' "$unit" | sed 's|^Documentation=file://||' | while read -r doc; do
    [ -f "$doc" ] || fail "$unit: Documentation= names $doc, which was not installed"
  done
  # What an operator relies on.
  if [ "$role" = coordinator ]; then
    grep -qx User=kforge "$unit" && grep -qx Group=kforge "$unit" || fail "$unit lacks User=kforge, Group=kforge"
  fi
  for line in StateDirectory=kforge WorkingDirectory=/var/lib/kforge \
              ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
              Restart=on-failure LimitNOFILE=65536 KillSignal=SIGTERM WantedBy=multi-user.target; do
    grep -qx "$line" "$unit" || fail "$unit lacks $line"
  done
done
# The agent boxes its jobs (docs/security.md): root, a delegated cgroup subtree it may write.
grep -qx Delegate=yes "$units/kforge-agent.service" || fail "the agent unit lacks Delegate=yes (job cgroups)"
! grep -q '^User=' "$units/kforge-agent.service" || fail "the agent unit must run as root to box its jobs"
! grep -q '^ProtectControlGroups=yes' "$units/kforge-agent.service" || fail "ProtectControlGroups=yes stops the agent's job cgroups"
grep -qx KillMode=control-group "$units/kforge-agent.service" ||
  fail "the agent unit must kill its jobs with it (KillMode=control-group)"
grep -q '^InaccessiblePaths=.*-/etc/kforge/api-token' "$units/kforge-agent.service" ||
  fail "the agent unit must hide the operator API token from jobs"
grep -qx PrivateDevices=yes "$units/kforge-coordinator.service" || fail "the coordinator unit lacks PrivateDevices=yes"
# The coordinator (a network server holding the LLM keys) needs no privilege at all.
for line in CapabilityBoundingSet= RestrictNamespaces=yes MemoryDenyWriteExecute=yes SystemCallFilter=@system-service \
            ProtectProc=invisible ProtectKernelLogs=yes SystemCallArchitectures=native; do
  grep -qx "$line" "$units/kforge-coordinator.service" || fail "the coordinator unit lacks $line"
done
# The agent's unit filters reach its jobs too: nothing that stops JIT compilers or the box.
for key in SystemCallFilter MemoryDenyWriteExecute RestrictNamespaces CapabilityBoundingSet ProtectClock; do
  ! grep -q "^$key=" "$units/kforge-agent.service" || fail "the agent unit sets $key=, which breaks its jobs or their box"
done
grep -q '^InaccessiblePaths=.*-/etc/kforge/coordinator.env' "$units/kforge-agent.service" ||
  fail "the agent unit must hide the LLM keys (coordinator.env) from jobs"
! grep -q '^PrivateDevices=' "$units/kforge-agent.service" || fail "PrivateDevices= in the agent unit hides the GPUs"

# systemd-analyze verify reports problems on stderr but exits 0 for many of them (an unknown
# key, a bad value): require silence. --man=no: the units link no man pages, and containers
# often have no man. Without a running systemd it loads the units and the targets they name
# from disk, and checks that each ExecStart= binary exists and is executable.
verify() { SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$@" > "$tmp/verify.out" 2>&1; }
verify "$units/kforge-coordinator.service" "$units/kforge-agent.service" ||
  fail "systemd-analyze verify failed: $(cat "$tmp/verify.out")"
[ ! -s "$tmp/verify.out" ] || fail "systemd-analyze verify complained: $(cat "$tmp/verify.out")"

# The check has teeth here: a misspelt key and a missing binary are reported.
mkdir "$tmp/bad"
sed 's/^LimitNOFILE=/LimitNOFLIE=/' "$units/kforge-agent.service" > "$tmp/bad/kforge-agent.service"
verify "$tmp/bad/kforge-agent.service" || true
grep -q LimitNOFLIE "$tmp/verify.out" || fail "systemd-analyze verify did not report a misspelt key: $(cat "$tmp/verify.out")"
sed "s|^ExecStart=$prefix/bin/|ExecStart=$tmp/nowhere/|" "$units/kforge-coordinator.service" > "$tmp/bad/kforge-coordinator.service"
if verify "$tmp/bad/kforge-coordinator.service"; then fail "systemd-analyze verify accepted a missing ExecStart= binary"; fi

# The sysusers entry creates user and group kforge, home /var/lib/kforge, no login shell.
sysusers=$prefix/lib/sysusers.d/kforge.conf
[ -f "$sysusers" ] || fail "$sysusers was not installed"
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$sysusers" > "$tmp/sysusers.out" 2>&1 ||
  fail "systemd-sysusers $sysusers: $(cat "$tmp/sysusers.out")"
grep -Eq '^kforge:x:[0-9]+:[0-9]+:[^:]*:/var/lib/kforge:/usr/sbin/nologin$' "$tmp/root/etc/passwd" ||
  fail "no kforge system user with home /var/lib/kforge and shell nologin: $(cat "$tmp/root/etc/passwd")"
grep -Eq '^kforge:x:[0-9]+:' "$tmp/root/etc/group" || fail "no kforge group: $(cat "$tmp/root/etc/group")"

echo "systemd units and sysusers entry: ok ($units)"
