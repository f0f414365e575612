#!/usr/bin/env bash
# Creates .venv and installs the project with every extra. Idempotent; sourced by the
# main and test scripts so that a fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { echo "Python 3.11+ is required (set PYTHON=...)" >&2; exit 1; }
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e ".[serve,train,dev]"
  touch "$stamp"
fi
# glibc's allocator made torch 3-4x slower on large batches on these machines.
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296
export PATH="$PWD/.venv/bin:$PATH"
