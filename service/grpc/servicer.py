"""`inference.GRPCInferenceService` on the runtime: methods that decode, delegate and
encode (`contents`), as the REST routes do, with the same checks and limits.

Every method is wrapped by `rpc`: it maps `ServiceError` to its status code, and records
the request in the `afm_grpc_*` metrics by method and code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from service.codecs import metadata, tensors
from service.core.errors import ServiceError, truncated
from service.core.model import ModelInfo, PerModel
from service.core.origin import Origin, request_id
from service.core.runtime import Runtime
from service.grpc.contents import infer_response, input_tensors
from service.grpc.errors import code_of
from service.grpc.proto import grpc_predict_v2_pb2 as pb
from service.grpc.proto.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceServicer
from service.ops.metrics import Metrics

log = logging.getLogger("service.grpc")
Request = TypeVar("Request")
Reply = TypeVar("Reply")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Reply]]


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


def _request_id(context: grpc.aio.ServicerContext) -> str:
    """The call's `x-request-id` metadata when it is a sane token (as HTTP's X-Request-ID),
    else a fresh one."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str):
            return request_id(value)
    return request_id(None)


def _model_metadata(info: ModelInfo) -> pb.ModelMetadataResponse:
    meta = metadata.oip_metadata(info)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=meta.name, versions=meta.versions, platform=meta.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs])


class InferenceServicer(GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime, metrics: Metrics, max_instances: int) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.max_instances = max_instances
        server = metadata.server_metadata()
        self.server = pb.ServerMetadataResponse(name=server.name, version=server.version,
                                                extensions=server.extensions)
        self.model_metadata = PerModel(_model_metadata)
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
        return self.model_metadata(self.runtime.info(request.name, request.version or None))

    @rpc
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        """`indices` INT64 and `weights` FP32 [B, F, L] as typed contents or raw bytes; the
        outputs come back the way the inputs came (raw_output_contents for raw inputs)."""
        fields, entries = self.runtime.info(request.model_name,
                                            request.model_version or None).input_shape
        indices, weights = input_tensors(request, self.max_instances * fields * entries)
        wanted = tensors.outputs_wanted([output.name for output in request.outputs])
        result = await self.runtime.infer(indices, weights, Origin(_request_id(context), "grpc"))
        return infer_response(request.id, result, wanted, raw=bool(request.raw_input_contents))
