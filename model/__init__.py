"""The model shared by training and serving: layers, feature space, manifest and bundle."""

import os

# onnxruntime's release builds start Microsoft's telemetry when imported: a device id and an
# event database under ~/.cache/Microsoft, and uploads. Set before any module of this
# package imports onnxruntime; an operator who wants it sets ORT_DISABLE_TELEMETRY=0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
