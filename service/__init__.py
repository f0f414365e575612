"""The online half: an onnxruntime inference service for AFM/FM bundles (never imports torch).

In layers, as the data flows (tests/service/test_layers.py enforces the directions):

- `ops/`: settings, metrics, logs, process policy, the shared model choice; beneath all.
- `core/`: the model's lifecycle (load, verify, warm up, reload, follow), the runtime
  (predict, explain, encode, infer through the micro-batcher), its checks, typed results
  and errors. No transport and no wire form.
- `codecs/`: one decoder and one encoder per wire form (the protocol's schemas, JSON and
  binary tensors, the /predict body, query strings, the rendered answers).
- transports: `http/` (the FastAPI app, routes, middleware) and `grpc/` (the Open Inference
  Protocol over gRPC), each on the core through the codecs.
- start-up: `server.Server` (one process: its runtime, then its transports), `app`
  (`create_app(settings, registry)` and the uvicorn factory) and `cli` (`afm-serve`).
- `client`: a small typed client.
"""
