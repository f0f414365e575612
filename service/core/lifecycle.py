"""The model being served: loaded at start, swapped by a reload, followed across workers.

A request takes the current `LoadedModel` once and uses it to the end, so a reload (which
loads, verifies and warms up the new bundle beside the old, then swaps one reference)
never changes the model under a request that is running. A bundle that fails any step
is refused and the old model keeps serving. A reload may only name a bundle inside the
models root (`resolve_bundle`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from model.bundle import BundleError
from model.verification import VerifiedFiles
from service.core.errors import Forbidden, InvalidInput, NotFound, NotReady, ReloadRefused
from service.core.model import LoadedModel, load_model
from service.core.results import Reloaded
from service.ops.metrics import Metrics
from service.ops.model_choice import Choice, SharedChoice
from service.ops.settings import Settings

log = logging.getLogger("service.runtime")


class Lifecycle:
    def __init__(
        self, settings: Settings, metrics: Metrics, shared: SharedChoice | None = None
    ) -> None:
        self._settings = settings
        self._verified = VerifiedFiles(settings.run_dir)  # digests the server's processes share
        self._metrics = metrics
        self._shared = shared
        self._model: LoadedModel | None = None
        self._ready = False
        self._reload_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self._ready and self._model is not None

    @property
    def model(self) -> LoadedModel:
        if self._model is None or not self._ready:
            raise NotReady("the model is not loaded yet")
        return self._model

    async def start(self) -> None:
        """Load the bundle a reload chose for all workers if there is one, else AFM_MODEL_DIR."""
        chosen = self._shared.read() if self._shared else None
        try:
            model = await asyncio.to_thread(self._load, chosen.directory if chosen else
                                            self._settings.model_dir)
        except BundleError:
            if chosen is None:
                raise
            log.exception("the shared model choice does not load; starting from AFM_MODEL_DIR")
            model = await asyncio.to_thread(self._load, self._settings.model_dir)
        self._install(model)
        self._ready = True
        threads = self._settings.ort_threads
        log.info("serving %s version %s (onnxruntime: %d thread%s)", model.ref.name,
                 model.ref.version, threads, "" if threads == 1 else "s")

    def stop(self) -> None:
        """Stop reporting ready."""
        self._ready = False

    async def reload(self, requested: str | None) -> Reloaded:
        """Refuses the bundle (ReloadRefused) and keeps serving on failure; on success the
        other workers are told to follow."""
        directory = resolve_bundle(requested, self.model.directory, self._settings.models_root)
        before, model = await self._swap(directory, requested or self.model.ref.name)
        sha256 = model.bundle.manifest.digest
        if self._shared is not None:
            self._shared.publish(Choice(directory, sha256))
        return Reloaded(model.ref, sha256, before.ref)

    async def follow(self, interval_s: float) -> None:
        """Run forever: switch to the model another worker's reload chose."""
        assert self._shared is not None
        while True:
            await asyncio.sleep(interval_s)
            chosen = self._shared.poll()
            current = self._model
            if chosen is None or current is None or (
                chosen.directory == current.directory
                and chosen.sha256 == current.bundle.manifest.digest
            ):
                continue
            try:
                await self._swap(chosen.directory, chosen.directory.name)
            except ReloadRefused:
                pass  # logged and counted by _swap; this worker keeps its model

    async def _swap(self, directory: Path, label: str) -> tuple[LoadedModel, LoadedModel]:
        async with self._reload_lock:
            before = self.model
            try:
                model = await asyncio.to_thread(self._load, directory)
            except Exception as e:
                self._metrics.reloads.labels("refused").inc()
                reason = public_reason(e, directory, label)
                log.warning("reload refused: %s", reason, exc_info=not isinstance(e, BundleError))
                raise ReloadRefused(f"reload refused, still serving version "
                                    f"{before.ref.version}: {reason}") from e
            self._install(model, before)
            self._metrics.reloads.labels("success").inc()
            log.info("reloaded: %s version %s (was %s)", model.ref.name, model.ref.version,
                     before.ref.version)
            return before, model

    def _load(self, directory: Path) -> LoadedModel:
        return load_model(directory, self._settings.ort_threads, self._settings.batch_max_size,
                          self._verified)

    def _install(self, model: LoadedModel, before: LoadedModel | None = None) -> None:
        self._model = model  # one reference swap: requests already running keep `before`
        self._metrics.serving(model.bundle.manifest, before.bundle.manifest if before else None)


def resolve_bundle(requested: str | None, current: Path, root: Path | None) -> Path:
    """The bundle directory a reload names, confined to the models root."""
    if requested is None:
        return current
    if root is None:
        raise Forbidden("reloading another bundle needs AFM_MODELS_ROOT to be set")
    try:  # RuntimeError: a symlink loop (3.11); OSError: e.g. a name too long
        candidate = (root / requested).resolve()
        is_dir = candidate.is_dir()
    except (OSError, ValueError, RuntimeError) as e:
        raise InvalidInput(f"model_dir {requested!r} is not a usable path") from e
    if not candidate.is_relative_to(root):
        raise Forbidden("model_dir must lie inside the models root")
    if not is_dir:
        raise NotFound(f"model_dir {requested!r} is not a directory in the models root")
    return candidate


def public_reason(error: Exception, directory: Path, label: str) -> str:
    """The reason without server paths or internals."""
    if isinstance(error, BundleError):
        return str(error).replace(str(directory), label)
    return f"unexpected {type(error).__name__} while loading the bundle"
