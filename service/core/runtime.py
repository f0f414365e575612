"""The serving runtime, free of any transport and wire form: predict, explain, encode and
infer on the model being served (`lifecycle`), through the micro-batcher; typed values in
and out (`results`). Every scored batch is also handed to drift monitoring (`monitor`),
offered to the shadow model (`shadow`) and, when the log is on, written to the impression log
under the request id its transport gave (`origin`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from model.bundle import Bundle, Scores
from model.features import Encoded, FeatureError
from service.core.batcher import Batcher
from service.core.checks import check_count, check_scores, check_tensors, check_text
from service.core.errors import InvalidInput, NotFound
from service.core.lifecycle import Lifecycle
from service.core.model import LoadedModel, ModelInfo
from service.core.monitor import Monitor
from service.core.origin import Origin
from service.core.results import (
    EncodedInstances,
    Importance,
    Inference,
    Predictions,
    Reloaded,
    ShadowStatus,
)
from service.core.shadow import Shadow
from service.ops.metrics import DriftReport, ImpressionMetrics, Metrics
from service.ops.model_choice import SharedChoice
from service.ops.settings import Settings

if TYPE_CHECKING:  # pyarrow (some 50 MB a worker) is imported only when the log is on
    from service.ops.impressions import ImpressionLog


class Runtime:
    def __init__(
        self, settings: Settings, metrics: Metrics, shared: SharedChoice | None = None,
        monitor: Monitor | None = None, shadow: Shadow | None = None,
    ) -> None:
        """`monitor`: drift monitoring (None: off); `shadow`: the shadow model's keeper
        (by default one that shares its choice with no other worker)."""
        self._max_instances = settings.max_instances
        self._metrics = metrics
        self._models = Lifecycle(settings, metrics, shared)
        self._monitor = monitor
        self.shadow = shadow if shadow is not None else Shadow(settings, metrics.shadow)
        self._batcher = Batcher(self._timed_run, settings.batch_max_size,
                                settings.batch_max_wait_s, settings.thread_min_instances or None)
        self._impressions = impression_log(settings, metrics.impressions)

    @property
    def ready(self) -> bool:
        return self._models.ready

    @property
    def model(self) -> LoadedModel:
        """The model being served (NotReady before there is one)."""
        return self._models.model

    async def start(self) -> None:
        await self._models.start()
        await self.shadow.start()
        if self._impressions is not None:
            self._impressions.start()

    async def stop(self) -> None:
        """Stop reporting ready, run whatever the batcher still holds, then write what the
        impression log holds and close its file."""
        self._models.stop()
        self._batcher.close()
        if self._impressions is not None:
            await asyncio.to_thread(self._impressions.close)

    def info(self, name: str | None = None, version: str | None = None) -> ModelInfo:
        """The model being served (NotReady before there is one); when `name` is given, only
        if it is that model, and that version when `version` is given (else NotFound)."""
        info = self.model.info
        if name is not None and (
            name != info.ref.name or version not in (None, info.ref.version)
        ):
            wanted = name if version is None else f"{name} version {version}"
            raise NotFound(f"model {wanted} is not served")
        return info

    async def predict(
        self, instances: Sequence[Mapping[str, Any]], explain: bool, top_k: int | None = None,
        origin: Origin | None = None,
    ) -> Predictions:
        """Score instances (field name to value); with `explain`, each one's explanation."""
        model, encoded = self._encode(instances)
        scores = await self._batcher.run(model.bundle, encoded.indices, encoded.weights)
        logged = self._scored(model, scores, encoded, origin, instances)
        result = model.explainer.predictions(encoded, scores, explain, top_k)
        result.impression_ids = logged
        return result

    def encode(self, instances: Sequence[Mapping[str, Any]]) -> EncodedInstances:
        """Field values -> the model's input tensors, with the values out of vocabulary."""
        model, encoded = self._encode(instances)
        return EncodedInstances(model.ref, encoded)

    def importance(self) -> Importance:
        model = self.model
        return Importance(model.ref, model.explainer.importance())

    async def infer(self, indices: np.ndarray, weights: np.ndarray,
                    origin: Origin | None = None) -> Inference:
        """Raw tensors (B, F, L), as the Open Inference Protocol sends them."""
        model = self.model
        check_tensors(model.bundle, indices, weights, self._max_instances)
        scores = await self._batcher.run(model.bundle, indices, weights)
        logged = self._scored(model, scores, Encoded(indices, weights), origin, None)
        return Inference(model.ref, scores, None if logged is None or origin is None
                         else origin.request_id)

    async def reload(self, requested: str | None) -> Reloaded:
        """Load, verify and warm up the bundle `requested` names (None: the one being
        served, from disk) beside the current one, then swap (ReloadRefused: no change).
        Promoting the shadow model (reloading its bundle) ends the shadowing."""
        reloaded = await self._models.reload(requested)
        shadow, live = self.shadow.model, self.model
        if shadow is not None and (shadow.directory, shadow.bundle.manifest.digest) == (
                live.directory, reloaded.sha256):
            self.shadow.clear()
        return reloaded

    async def set_shadow(self, requested: str, fraction: float) -> ShadowStatus:
        """Load a bundle under the models root as the shadow model (ReloadRefused: none
        changes); `fraction` of live requests are also scored by it, after their answer."""
        live = self.model
        await self.shadow.set(requested, fraction, live.directory)
        return self.shadow.status(live.ref)

    def clear_shadow(self) -> ShadowStatus:
        self.shadow.clear()
        return self.shadow.status(self.model.ref)

    def shadow_status(self) -> ShadowStatus:
        return self.shadow.status(self.model.ref)

    def drift(self) -> DriftReport | None:
        """Drift statistics of the model being served (None: monitoring off, no model yet,
        or a bundle without a reference)."""
        if self._monitor is None or not self.ready:
            return None
        return self._monitor.report(self.model.watched)

    async def follow(self, interval_s: float) -> None:
        """Run forever: switch to the model another worker's reload chose."""
        await self._models.follow(interval_s)

    def _encode(self, instances: Sequence[Mapping[str, Any]]) -> tuple[LoadedModel, Encoded]:
        model = self.model
        check_count(len(instances), self._max_instances)
        try:  # refuses, naming the field, numbers that overflow float32 once normalised
            encoded = model.bundle.features.encode(instances)
        except FeatureError as e:
            raise InvalidInput(str(e)) from e
        check_text(encoded.oov)
        return model, encoded

    def _scored(self, model: LoadedModel, scores: Scores, encoded: Encoded, origin: Origin | None,
                instances: Sequence[Mapping[str, Any]] | None) -> list[str] | None:
        """Every scored batch passes here, whichever route or transport sent it, before
        its answer is built: refuse scores that are not finite, then record the batch
        (metrics, drift monitoring, the impression log) and offer it to the shadow model;
        each costs a request one check of a setting read at start-up when off. With both
        the log and a shadow model, the two share a slot: the log writes the shadow's scores
        beside the live ones. `instances`: the field values, None for the tensor routes.
        Returns the instances' impression ids when the log took them, else None."""
        check_scores(scores)
        self._metrics.observe_scored(scores.score, encoded.oov)
        if self._monitor is not None:
            self._monitor.observe(model.watched, encoded.indices, encoded.weights, scores)
        log = self._impressions if origin is not None else None
        slot = log.shadow_slot() if log is not None and self.shadow.model is not None else None
        offered = self.shadow.offer(model, scores, encoded.indices, encoded.weights, instances,
                                    slot)
        if log is None or origin is None:
            return None
        return log.record(model.bundle, scores, encoded if instances is None else instances,
                          encoded, origin.request_id, origin.route, slot if offered else None)

    def _timed_run(self, bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> Scores:
        start = time.perf_counter()
        scores = bundle.run(indices, weights)
        self._metrics.observe_run(time.perf_counter() - start, len(indices))
        return scores


def impression_log(settings: Settings, metrics: ImpressionMetrics) -> ImpressionLog | None:
    """The impression log AFM_IMPRESSION_LOG_DIR asks for, or None."""
    if settings.impression_log_dir is None:
        return None
    from service.ops.impressions import ImpressionLog

    return ImpressionLog.of(settings, metrics)
