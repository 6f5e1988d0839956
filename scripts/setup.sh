#!/usr/bin/env bash
# Installs kforge's build and test dependencies from Debian's packages.
# Idempotent: packages already present are skipped. Runs as root, or through sudo.
set -euo pipefail

required=(
  build-essential cmake pkg-config
  clang-format                # scripts/format.sh (git-clang-format), CI's style check
  libzmq3-dev cppzmq-dev
  libmsgpack-cxx-dev
  libsqlite3-dev
  libspdlog-dev
  libtomlplusplus-dev
  doctest-dev
  libcurl4-openssl-dev
  libssl-dev                  # libcrypto: SHA-256
  nlohmann-json3-dev
  libcli11-dev                # command-line flags
  libcpp-httplib-dev
  python3 python3-numpy python3-pytest
  chromium                    # the dashboard test (tests/dashboard) renders in headless Chromium
)
# The CPU build of PyTorch is large; KFORGE_SKIP_TORCH=1 leaves it out.
[ "${KFORGE_SKIP_TORCH:-0}" = 1 ] || required+=(python3-torch)

missing=()
for pkg in "${required[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#required[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "setup: missing packages (${missing[*]}) and not root; no sudo to install them" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
