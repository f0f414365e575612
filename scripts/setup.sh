#!/usr/bin/env bash
# Creates .venv and installs the project with every extra (idempotent).
#   source scripts/setup.sh   also puts .venv/bin on PATH and sets the allocator variables
#                             (the main and test scripts do this)
#   bash scripts/setup.sh     only installs
# Sourced, it changes nothing else in the caller's shell: not its options, not its working
# directory, and a failure returns 1 instead of closing the shell. The install itself runs
# as a separate bash process with strict options of its own.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  say() { echo "setup: $*" >&2; }
  PYTHON=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null \
      || { say "Python 3.11+ is required (set PYTHON=...)"; exit 1; }
    say "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
  fi
  stamp=.venv/.installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    say "installing the project and its dependencies into .venv, one line a package"
    say "(a first install on a new machine takes a few minutes: torch is large; log: .venv/install.log)"
    .venv/bin/pip install --quiet --upgrade pip
    if ! .venv/bin/pip install --progress-bar off -e ".[serve,train,dev]" 2>&1 | tee .venv/install.log \
        | { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed|ERROR)' || true; }; then
      tail -n 30 .venv/install.log >&2
      say "pip install failed (the end of .venv/install.log is above)"
      exit 1
    fi
    touch "$stamp"
    say "installed"
  fi
  exit 0
fi

_afm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! bash "$_afm_root/scripts/setup.sh"; then
  unset _afm_root
  return 1
fi
# glibc's allocator made torch 3-4x slower on large batches on these machines.
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296
case ":$PATH:" in
  *":$_afm_root/.venv/bin:"*) ;;
  *) export PATH="$_afm_root/.venv/bin:$PATH" ;;
esac
unset _afm_root
