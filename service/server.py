"""One server process: its runtime, the tasks beside it, and its transports.

`Server.start` loads the model (the runtime), then starts the gRPC transport when
AFM_GRPC_PORT is set, then the tasks beside the requests: the shadow model's scoring, the
drift window's counting (AFM_MONITOR), following other workers' reloads and shadow
choices, and refreshing the process metrics; `stop` undoes it in reverse. The HTTP
transport (`service.http.app`) runs a server from its lifespan, in the event loop uvicorn
gives each worker process, so every transport of a worker shares one runtime and one
loop; `serve_grpc` runs one with gRPC alone, no HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from service.core.monitor import Monitor
from service.core.runtime import Runtime
from service.core.shadow import Shadow
from service.ops.metrics import Metrics, multiprocess_dir, reap_dead_workers, refresh_process_metrics
from service.ops.model_choice import SHADOW_FILE, SharedChoice
from service.ops.settings import Settings
from service.ops.shared_counts import SharedCounts

if TYPE_CHECKING:  # grpcio is imported only when gRPC is on
    from service.grpc.server import GrpcServer

FOLLOW_INTERVAL_S = 0.5


class Server:
    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None,
                 after_start: Callable[[], None] | None = None) -> None:
        """`after_start` runs once the model is loaded and the transports started."""
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.multiproc = multiprocess_dir()
        run_dir = settings.run_dir
        self.shared = SharedChoice(run_dir) if run_dir else None
        shadow = Shadow(settings, self.metrics.shadow,
                        SharedChoice(run_dir, SHADOW_FILE) if run_dir else None)
        self.monitor = Monitor(
            settings.monitor_window_s, settings.window_steps, settings.monitor_min_instances,
            SharedCounts(run_dir) if run_dir else None,
        ) if settings.monitor else None
        self.runtime = Runtime(settings, self.metrics, self.shared, self.monitor, shadow)
        self.metrics.drift.source = self.runtime.drift
        self.grpc: GrpcServer | None = None
        if settings.grpc_port is not None:
            from service.grpc.server import GrpcServer

            self.grpc = GrpcServer(settings, self.runtime, self.metrics)
        self._after_start = after_start
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.multiproc is not None:
            reap_dead_workers(self.multiproc)
        await self.runtime.start()
        if self.grpc is not None:
            await self.grpc.start()
        if self._after_start is not None:
            self._after_start()
        shadow = self.runtime.shadow
        self._tasks.append(asyncio.create_task(shadow.run()))
        if self.shared is not None:
            self._tasks.append(asyncio.create_task(self.runtime.follow(FOLLOW_INTERVAL_S)))
            self._tasks.append(asyncio.create_task(shadow.follow(FOLLOW_INTERVAL_S)))
        if self.monitor is not None:
            self._tasks.append(asyncio.create_task(self.monitor.run()))
        if self.multiproc is not None:
            self._tasks.append(asyncio.create_task(refresh_process_metrics(self.metrics.process)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self.grpc is not None:
            await self.grpc.stop()
        await self.runtime.stop()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def serve_grpc(self) -> None:
        """Serve gRPC alone, no HTTP, until the gRPC server stops or this is cancelled."""
        if self.grpc is None:
            raise ValueError("serving gRPC alone needs AFM_GRPC_PORT")
        async with self.running():
            await self.grpc.wait()
