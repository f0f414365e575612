"""The core: the model being served (`model`, `lifecycle`), the runtime that scores and
explains with it (`runtime`, `explain`, `batcher`), drift monitoring of what it scores
(`monitor`), the shadow model scored beside it (`shadow`), its checks and its typed results,
and what can go wrong (`errors`). No transport, no wire form: it imports neither the web
framework, grpcio, nor the protocol's schemas (tests/service/test_layers.py)."""
