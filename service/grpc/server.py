"""The gRPC transport's server: grpcio's asyncio server on the event loop of the runtime it
serves, with the Open Inference Protocol and the standard gRPC health service.

With several worker processes each worker binds AFM_GRPC_PORT with SO_REUSEPORT (grpcio's
default on Linux), so the kernel spreads connections over the workers, as it does for
the REST port; a gRPC channel is one long-lived connection, so it stays with one worker.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.core.runtime import Runtime
from service.grpc.proto.grpc_predict_v2_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from service.grpc.servicer import InferenceServicer
from service.ops.metrics import Metrics
from service.ops.settings import Settings

SERVICE_NAME = "inference.GRPCInferenceService"
STOP_GRACE_S = 10.0
log = logging.getLogger("service.grpc")


class Health(health_pb2_grpc.HealthServicer):
    """grpc.health.v1: SERVING once the model is loaded (Kubernetes' gRPC probes ask this)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE_NAME):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service[:64]!r}")
        status = health_pb2.HealthCheckResponse
        return status(status=status.SERVING if self.runtime.ready else status.NOT_SERVING)


class GrpcServer:
    def __init__(self, settings: Settings, runtime: Runtime, metrics: Metrics) -> None:
        self.settings = settings
        self.runtime = runtime
        self.metrics = metrics
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        limit = self.settings.grpc_max_message_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.max_send_message_length", limit)])
        add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self.runtime, self.metrics, self.settings.max_instances), server)
        health_pb2_grpc.add_HealthServicer_to_server(Health(self.runtime), server)
        host = self.settings.host
        self.port = server.add_insecure_port(
            f"[{host}]:{self.settings.grpc_port}" if ":" in host else f"{host}:{self.settings.grpc_port}")
        await server.start()
        self.server = server
        log.info("gRPC (Open Inference Protocol) on %s port %d", host, self.port)

    async def wait(self) -> None:
        """Until the server stops. Shielded: cancelling the wait must not cancel the future
        grpcio's own stop waits on."""
        if self.server is not None:
            await asyncio.shield(self.server.wait_for_termination())

    async def stop(self) -> None:
        """Refuse new calls and let running ones finish (at most STOP_GRACE_S)."""
        if self.server is not None:
            await self.server.stop(STOP_GRACE_S)
            self.server = None
