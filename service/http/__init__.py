"""The HTTP layer: the route table and its handlers (`routes/`), the middleware (`limits`,
`telemetry`), the JSON body reader (`body`), the response class, the HTTP reading of
`service.errors` (`errors`), the heap trimmer run after large bodies (`trim`) and the
bounded httptools protocol afm-serve runs uvicorn with (`bounded_protocol`).
`service.app` assembles it around the runtime. Nothing outside this package and
`service.app` imports the web framework (tests/service/test_layers.py)."""
