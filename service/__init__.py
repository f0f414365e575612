"""The online half: an onnxruntime inference service for AFM/FM bundles (never imports torch).

Layers, as in MLServer: `schemas` (protocol types), `runtime` (load, verify, warm up,
predict, explain, reload; typed values in and out, no web framework), `errors` (what can
go wrong, framework-free), `batcher`, `explain`, `metadata`, the HTTP layer in `http/`
(routes, middleware, body reader, responses, the HTTP reading of errors) and
`app.create_app(settings, registry)` with everything passed in. `cli` is `afm-serve`;
`client` a small typed client.
"""
