#!/usr/bin/env bash
# The main job: serve the default AFM on 127.0.0.1:8000 (--host, --port; or AFM_HOST, AFM_PORT).
# The first run trains it on built-in generated data (configs/synthetic-afm.toml) into
# runs/default (AFM_MODEL_DIR); later runs serve the bundle found there once it loads and
# verifies.
# Usage: scripts/main.sh [--retrain] [--host HOST] [--port PORT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
usage="usage: scripts/main.sh [--retrain] [--host HOST] [--port PORT]   (--retrain: train again even if runs/default holds a bundle)"
retrain=""
host=${AFM_HOST:-127.0.0.1}
port=${AFM_PORT:-8000}
while [ $# -gt 0 ]; do
  case $1 in
    --retrain) retrain=1 ;;
    --host|--port)
      [ $# -ge 2 ] || { echo "main.sh: $1 needs a value; $usage" >&2; exit 2; }
      if [ "$1" = --host ]; then host=$2; else port=$2; fi
      shift ;;
    --host=*) host=${1#--host=} ;;
    --port=*) port=${1#--port=} ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "main.sh: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
  shift
done
if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
  echo "main.sh: the port must be a number from 1 to 65535, got '$port'" >&2
  exit 2
fi
source scripts/setup.sh
bundle=${AFM_MODEL_DIR:-runs/default}

# Before any training: a busy port would only show once the model is trained.
python - "$host" "$port" <<'PY' || exit 2
import sys

from service.cli import port_problem

problem = port_problem(sys.argv[1], int(sys.argv[2]))
if problem:
    sys.exit(f"main.sh: {problem}")
PY

reuse=""
if [ -z "$retrain" ] && [ -e "$bundle/manifest.json" ]; then
  if python - "$bundle" <<'PY'
import sys

from model.bundle import Bundle, BundleError

try:
    manifest = Bundle.load(sys.argv[1]).manifest
except BundleError as e:
    sys.exit(f"main.sh: not reusing it: {e}")
print(f"main.sh: serving the bundle already in {sys.argv[1]} ({manifest.name} version "
      f"{manifest.version}, trained {manifest.created_at}); --retrain trains a new one")
PY
  then reuse=1; fi
fi
if [ -z "$reuse" ]; then
  echo "main.sh: training the default model into $bundle (configs/synthetic-afm.toml; one to two minutes on 2 busy cores)"
  # One thread unless the caller chose otherwise: this model's steps are too small to split,
  # and a second thread waiting for a core that another job holds made its epochs many
  # times slower on a busy machine.
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} afm-train --config configs/synthetic-afm.toml --out "$bundle"
fi
echo "main.sh: bundle $(cd "$bundle" && pwd); serving on http://$host:$port (API page: http://$host:$port/docs)"
exec afm-serve --model-dir "$bundle" --host "$host" --port "$port"
