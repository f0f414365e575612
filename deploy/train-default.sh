#!/bin/sh
# The compose stack's one-shot trainer: trains the default model into $AFM_MODEL_DIR unless
# a bundle is already there. It trains into a side directory and renames it when done, so
# an interrupted run never leaves a half-written bundle for the server to find.
set -eu
target=${AFM_MODEL_DIR:-/models/default}
config=${AFM_TRAIN_CONFIG:-configs/synthetic-afm.toml}
if [ -f "$target/manifest.json" ]; then
  echo "afm-train-default: $target holds a bundle; nothing to do"
  exit 0
fi
partial="$target.partial"
rm -rf "$partial" "$target"
afm-train --config "$config" --out "$partial"
mv "$partial" "$target"
echo "afm-train-default: trained $config into $target"
