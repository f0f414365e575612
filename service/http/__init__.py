"""The HTTP layer: routes (`routes/`), the middleware, the JSON body reader (`body`), the
response class, the HTTP reading of `service.errors` (`errors`) and the heap trimmer run
after large bodies (`trim`). `service.app` assembles it around the runtime; the bounded
httptools protocol is still `service.protocol` (bench/protocol.py imports it there).
Nothing outside this package, `service.app` and `service.protocol` imports the web
framework (tests/service/test_layers.py)."""
