#!/usr/bin/env bash
# clang-format (the repository's .clang-format) on the C++ lines changed since a base commit:
# the lines a change touches follow the style, and nobody reformats lines they did not touch.
#   ./scripts/format.sh --check [BASE]  shows what clang-format would change; exits 1 if anything
#   ./scripts/format.sh [BASE]          formats those lines in place
#   ./scripts/format.sh --check --all   every tracked C++ file (what CI checks: the whole tree
#                                       follows the style since 2026-12-07)
# BASE: a commit; default $KFORGE_FORMAT_BASE, else where HEAD left origin/main (or main).
# Uncommitted changes count as changed. Needs git-clang-format (Debian's clang-format).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi
if [ "${1:-}" = --all ]; then
  command -v clang-format >/dev/null 2>&1 || { echo "format: clang-format not found (apt-get install clang-format)" >&2; exit 2; }
  mapfile -t files < <(git ls-files '*.c' '*.cc' '*.cpp' '*.h' '*.hpp')
  if [ "$check" = 0 ]; then
    clang-format -i "${files[@]}"
    exit 0
  fi
  if ! out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1); then
    printf '%s\n' "$out" | head -60
    echo "format: the files above do not follow .clang-format; ./scripts/format.sh --all fixes them" >&2
    exit 1
  fi
  echo "format: all ${#files[@]} C++ files follow .clang-format"
  exit 0
fi
base=${1:-${KFORGE_FORMAT_BASE:-}}
if [ -z "$base" ]; then
  for ref in origin/main main; do
    if base=$(git merge-base HEAD "$ref" 2>/dev/null); then break; fi
    base=
  done
fi
if [ -z "$base" ]; then
  echo "format: no base commit (give one, or set KFORGE_FORMAT_BASE)" >&2
  exit 2
fi
if ! command -v git-clang-format >/dev/null 2>&1; then
  echo "format: git-clang-format not found (apt-get install clang-format)" >&2
  exit 2
fi
extensions=c,cc,cpp,h,hpp
if [ "$check" = 0 ]; then
  git clang-format --force --extensions "$extensions" "$base"
  exit 0
fi
out=$(git clang-format --diff --extensions "$extensions" "$base" 2>&1) || true
case "$out" in
  "" | "no modified files to format" | "clang-format did not modify any files")
    echo "format: the C++ lines changed since ${base:0:12} follow .clang-format"
    exit 0 ;;
esac
printf '%s\n' "$out"
echo "format: the lines above changed since ${base:0:12} do not follow .clang-format;" \
     "./scripts/format.sh ${base:0:12} fixes them" >&2
exit 1
