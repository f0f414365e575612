"""The online half: an onnxruntime inference service for AFM/FM bundles (never imports torch).

Layers, as in MLServer: `schemas` (protocol types), `runtime` (load, verify, warm up,
predict, explain, reload; no HTTP), `batcher`, `explain`, thin `routes`, and
`app.create_app(settings, registry)` with everything passed in. `cli` is `afm-serve`;
`client` a small typed client.
"""
