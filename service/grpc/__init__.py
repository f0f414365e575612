"""The gRPC transport: the Open Inference Protocol (KServe V2) on the same runtime as REST.

`proto/` holds the protocol's .proto and the modules generated from it (`generate.sh`);
`server` runs grpcio's asyncio server in the process's event loop, `servicer` implements
the methods, `contents` decodes and encodes gRPC's tensors, `errors` maps
`service.core.errors` to gRPC status codes.
"""
