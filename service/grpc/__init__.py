"""The Open Inference Protocol (KServe V2) gRPC service, on the same runtime as REST.

`proto/` holds the protocol's .proto and the modules generated from it (`generate.sh`);
`servicer` implements the methods, `server` runs grpcio's asyncio server in the app's
event loop, `errors` maps `service.errors` to gRPC status codes.
"""
