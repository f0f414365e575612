#!/usr/bin/env bash
# The test command: lint and type checks, then the whole suite. `.ci/run` runs it, then
# the deployment stage (deploy/ci/stack.sh). It ends with a line naming what skipped tests
# lacked (tests/helpers/skips.py) and the command that installs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
# One torch thread a process unless the caller chose: the suite's models are small, and on
# a shared machine a second thread waits for a core and makes every training step slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
ruff check .
mypy
pytest "$@"
