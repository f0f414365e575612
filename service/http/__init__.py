"""The HTTP transport: the FastAPI app (`app`), the route table and its handlers
(`routes/`), the one middleware (`middleware`: `limits`, `telemetry`, `trim`), the JSON
body reader (`body`), the framing of binary tensors (`binary`), the response class, the
HTTP reading of `service.core.errors` (`errors`), the explanation page (`ui/`) and the
bounded httptools protocol afm-serve runs uvicorn with (`bounded_protocol`). Nothing
outside this package and `service.app` imports the web framework
(tests/service/test_layers.py)."""
