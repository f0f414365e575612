#!/usr/bin/env bash
# The test command: lint and type checks, then the whole suite. `.ci/run` runs it, then
# the deployment stage (deploy/ci/stack.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
ruff check .
mypy
pytest "$@"
