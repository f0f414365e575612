"""`inference.GRPCInferenceService` on the runtime: methods that decode, delegate and
encode, as the REST routes do, with the same checks (`service.tensors`) and limits.

Every method is wrapped by `rpc`: it maps `ServiceError` to its status code, and records
the request in the `afm_grpc_*` metrics by method and code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np

from service import metadata, tensors
from service.errors import InvalidInput, ServiceError, truncated
from service.grpc.errors import code_of
from service.grpc.proto import grpc_predict_v2_pb2 as pb
from service.grpc.proto.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceServicer
from service.metrics import Metrics
from service.runtime import Inference, Runtime

log = logging.getLogger("service.grpc")
Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]
CONTENTS = {"INT64": "int64_contents", "FP32": "fp32_contents"}


def rpc(method: Method[Request, Reply]) -> Method[Request, Reply]:
    name = method.__name__

    @functools.wraps(method)
    async def handler(self: InferenceServicer, request: Request,
                      context: grpc.aio.ServicerContext) -> Reply:
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(self, request, context)
        except ServiceError as e:
            code = code_of(e)
            await context.abort(code, truncated(e.message))
            raise  # abort raises; this only tells type checkers
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected failure in gRPC %s", name)
            await context.abort(code, "internal error")
            raise
        finally:
            self.record(name, code, time.perf_counter() - start)

    return handler


class InferenceServicer(GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime, metrics: Metrics, max_instances: int) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.max_instances = max_instances
        server = metadata.server_metadata()
        self.server = pb.ServerMetadataResponse(name=server.name, version=server.version,
                                                extensions=server.extensions)
        self._children: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}

    def record(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        children = self._children.get((method, code))
        if children is None:  # .labels() is slow next to a request; few keys
            children = self._children[(method, code)] = (
                self.metrics.grpc_requests.labels(method, code.name),
                self.metrics.grpc_seconds.labels(method))
        children[0].inc()
        children[1].observe(seconds)

    @rpc
    async def ServerLive(self, request: pb.ServerLiveRequest,
                         context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: pb.ServerReadyRequest,
                          context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    @rpc
    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        if not self.runtime.ready:
            return pb.ModelReadyResponse(ready=False)
        self.runtime.info(request.name, request.version or None)  # NotFound
        return pb.ModelReadyResponse(ready=True)

    @rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return self.server

    @rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        meta = self.runtime.info(request.name, request.version or None).oip_metadata
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name, versions=meta.versions, platform=meta.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape)
                     for t in meta.outputs])

    @rpc
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        """`indices` INT64 and `weights` FP32 [B, F, L] as typed contents or raw bytes; the
        outputs come back the way the inputs came (raw_output_contents for raw inputs)."""
        fields, entries = self.runtime.info(request.model_name,
                                            request.model_version or None).input_shape
        indices, weights = input_tensors(request, self.max_instances * fields * entries)
        wanted = tensors.outputs_wanted([output.name for output in request.outputs])
        result = await self.runtime.infer(indices, weights)
        return infer_response(request.id, result, wanted, raw=bool(request.raw_input_contents))


def input_tensors(request: pb.ModelInferRequest, limit: int) -> tuple[np.ndarray, np.ndarray]:
    inputs, raw = request.inputs, request.raw_input_contents
    if raw and len(raw) != len(inputs):
        raise InvalidInput(f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs "
                           f"(one per input, in order)")

    def decode(i: int) -> np.ndarray:
        tensor = inputs[i]
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {tensor.name!r}: contents and raw_input_contents "
                                   f"are both given")
            return tensors.from_bytes(tensor.name, tensor.datatype, tensor.shape, raw[i], limit)
        tensors.declared_size(tensor.name, tensor.datatype, tensor.shape, limit)
        field = CONTENTS[tensor.datatype]
        values: Sequence[float] = getattr(tensor.contents, field)
        if not values and tensor.contents.ByteSize():
            raise InvalidInput(f"input {tensor.name!r} ({tensor.datatype}) must carry its "
                               f"values in contents.{field}")
        return tensors.from_values(tensor.name, tensor.datatype, tensor.shape, values, limit)

    return tensors.gather(((tensor.name, i) for i, tensor in enumerate(inputs)), decode)


def infer_response(request_id: str, result: Inference, wanted: Sequence[str],
                   raw: bool) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=result.model["name"],
                                     model_version=result.model["version"], id=request_id)
    for name in wanted:
        array = np.ascontiguousarray(getattr(result.scores, name), "<f4")
        output = response.outputs.add(name=name, datatype="FP32", shape=array.shape)
        if raw:
            response.raw_output_contents.append(array.tobytes())
        else:
            output.contents.fp32_contents.extend(array.ravel().tolist())
    return response
