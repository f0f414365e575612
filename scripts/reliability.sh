#!/usr/bin/env bash
# The long form of tests/reliability: a 10-minute soak, many more fuzzing examples, more
# corpus passes, reloads and a longer worker-kill run. Figures go to one JSON line per
# test in $RELIABILITY_REPORT (default reliability-report.jsonl), which docs/RELIABILITY.md
# quotes. Needs wrk (Debian: apt-get install wrk); it installs nothing.
# Usage: scripts/reliability.sh [pytest args...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
export RELIABILITY_REPORT=${RELIABILITY_REPORT:-$PWD/reliability-report.jsonl}
export RELIABILITY_SOAK_S=${RELIABILITY_SOAK_S:-600}
export RELIABILITY_WARMUP_S=${RELIABILITY_WARMUP_S:-30}
export RELIABILITY_FUZZ_EXAMPLES=${RELIABILITY_FUZZ_EXAMPLES:-300}
export RELIABILITY_CORPUS_PASSES=${RELIABILITY_CORPUS_PASSES:-10}
export RELIABILITY_RELOADS=${RELIABILITY_RELOADS:-60}
export RELIABILITY_KILL_LOAD_S=${RELIABILITY_KILL_LOAD_S:-30}
: > "$RELIABILITY_REPORT"
status=0
pytest -q -s -p no:cacheprovider tests/reliability "$@" || status=$?
echo "figures: $RELIABILITY_REPORT"
exit "$status"
