"""Codecs: one decoder and one encoder per wire form, shared by every transport that speaks
it, between the transports and the core. The protocol's types (`schemas`, pydantic) and
what the server says of itself (`metadata`); /predict bodies read fast (`plain_body`) and
answers rendered (`predictions`); query strings (`query`); the Open Inference Protocol's
tensors (`tensors`: JSON, typed values, raw bytes) and its REST infer with binary tensors
(`infer`). gRPC's own message form is `service.grpc.contents`."""
