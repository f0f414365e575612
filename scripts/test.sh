#!/usr/bin/env bash
# The test command: lint, then the whole suite. `.ci/run` runs exactly this.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ruff check .
pytest "$@"
