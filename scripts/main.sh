#!/usr/bin/env bash
# The main job: train the default AFM on built-in generated data, export its bundle, serve it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
bundle=${AFM_MODEL_DIR:-runs/default}
afm-train --config configs/synthetic-afm.toml --out "$bundle"
echo "bundle: $PWD/$bundle"
exec afm-serve --model-dir "$bundle" --host "${AFM_HOST:-127.0.0.1}" --port "${AFM_PORT:-8000}"
