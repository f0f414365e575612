"""Shadow scoring: a candidate model scored beside the live one on a share of live requests.

`offer` is all a live request pays: nothing without a candidate, else a coin flip and a
queue append. A background task (`run`) scores what waits after the answers went out: it
lets every ready live request run first, takes what waits up to a batch, encodes each
request's instances through the candidate's own feature space (another vocabulary or field
set is fine: fields it lacks are left out), runs the candidate in a thread, and records
how the two differ. The queue holds at most `shadow_max_pending` instances; beyond, an
offer is dropped and counted. Nothing the shadow does can fail or delay a live request.

Tensor requests (the Open Inference Protocol) carry no field values: they are shadowed
only when the candidate has the live model's fields and vocabularies, and skipped (counted)
otherwise. The candidate is loaded and verified as a reload's bundle is; a refused one
changes nothing. With several workers the choice is shared like the model's. An offer may
carry the impression log's slot (`ShadowSlot`): filled when its request is scored, given
up when it will not be.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import BundleError, Scores
from model.features import FeatureError
from model.verification import VerifiedFiles
from service.core.errors import ReloadRefused
from service.core.lifecycle import public_reason, resolve_bundle
from service.core.model import LoadedModel, ModelInfo, load_model
from service.core.results import ModelRef, ShadowScored, ShadowStatus
from service.ops.metrics import ShadowMetrics, observe_many
from service.ops.model_choice import Choice, SharedChoice
from service.ops.settings import Settings
from service.ops.shadow_slot import ShadowSlot, ShadowValues

log = logging.getLogger("service.shadow")
RANK_RING = 256  # recent instances each new one is ordered against
Instances = Sequence[Mapping[str, Any]]


@dataclass(slots=True)
class _Offered:
    live: LoadedModel
    scores: Scores
    indices: np.ndarray
    weights: np.ndarray
    instances: Instances | None  # None: a tensor request
    slot: ShadowSlot | None  # where the impression log waits for its scores


class Shadow:
    def __init__(self, settings: Settings, metrics: ShadowMetrics,
                 shared: SharedChoice | None = None,
                 draw: Callable[[], float] = random.random) -> None:
        self._settings = settings
        self._verified = VerifiedFiles(settings.run_dir)  # digests the server's processes share
        self._metrics = metrics
        self._shared = shared
        self._draw = draw
        self._candidate: LoadedModel | None = None
        self._fraction = 0.0
        self._queue: deque[_Offered] = deque()
        self._pending = 0  # instances waiting
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._fits: tuple[ModelInfo, ModelInfo, bool, bool] | None = None
        self._ring = (np.empty(0), np.empty(0))  # recent (live, shadow) scores
        self.listeners: list[Callable[[ShadowScored], None]] = []

    def status(self, live: ModelRef) -> ShadowStatus:
        candidate = self._candidate
        if candidate is None:
            return ShadowStatus(live, None, None, 0.0)
        return ShadowStatus(live, candidate.ref, candidate.bundle.manifest.digest, self._fraction)

    @property
    def model(self) -> LoadedModel | None:
        return self._candidate

    async def start(self) -> None:
        """Load the shadow model another worker chose, if any (a failure is logged)."""
        chosen = self._shared.read() if self._shared is not None else None
        if chosen is not None:
            await self._follow(chosen)

    async def set(self, requested: str, fraction: float, current: Path) -> LoadedModel:
        """Load and verify the bundle `requested` names as the shadow model (ReloadRefused:
        no change), scoring `fraction` of live requests; the other workers follow."""
        directory = resolve_bundle(requested, current, self._settings.models_root)
        async with self._lock:
            try:
                candidate = await asyncio.to_thread(self._load, directory)
            except Exception as e:
                reason = public_reason(e, directory, requested)
                log.warning("shadow refused: %s", reason, exc_info=not isinstance(e, BundleError))
                raise ReloadRefused(f"shadow model refused: {reason}") from e
            self._install(candidate, fraction)
        if self._shared is not None:
            self._shared.publish(Choice(directory, candidate.bundle.manifest.digest, fraction))
        return candidate

    def clear(self, publish: bool = True) -> LoadedModel | None:
        """Stop shadowing; what waits is dropped unscored. Returns the model removed."""
        removed = self._candidate
        if removed is not None:
            self._metrics.info.labels(*_labels(removed)).set(0)
            log.info("shadow model %s version %s removed", removed.ref.name, removed.ref.version)
        self._candidate, self._fraction = None, 0.0
        self._metrics.fraction.set(0)
        self._metrics.requests.labels("dropped").inc(len(self._queue))
        _give_up(self._queue)
        self._queue.clear()
        self._pending = 0
        if publish and self._shared is not None:
            self._shared.publish(None)
        return removed

    def offer(self, live: LoadedModel, scores: Scores, indices: np.ndarray, weights: np.ndarray,
              instances: Instances | None, slot: ShadowSlot | None = None) -> bool:
        """A live request just scored: queue it for the shadow model (a share of requests,
        as many as the bound allows). Whether it was queued: only then is `slot` settled."""
        if self._candidate is None or (self._fraction < 1.0 and self._draw() >= self._fraction):
            return False
        rows = len(indices)
        if self._pending + rows > self._settings.shadow_max_pending:
            self._metrics.requests.labels("dropped").inc()
            return False
        self._queue.append(_Offered(live, scores, indices, weights, instances, slot))
        self._pending += rows
        self._wake.set()
        return True

    async def run(self) -> None:
        """Run forever: score what waits, a batch at a time, after the live requests ready."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await asyncio.sleep(0)  # every live request ready to run goes first
                batch = self._take()
                candidate = self._candidate
                if candidate is None or not batch:
                    _give_up(batch)
                    continue
                try:
                    await self._score(candidate, batch)
                except Exception:
                    log.exception("shadow scoring failed")
                    self._metrics.requests.labels("failed").inc(len(batch))
                    _give_up(batch)

    async def follow(self, interval_s: float) -> None:
        """Run forever: load or remove the shadow model as another worker chose."""
        assert self._shared is not None
        while True:
            await asyncio.sleep(interval_s)
            if self._shared.changed():
                chosen = self._shared.read()
                if chosen is None:
                    self.clear(publish=False)
                else:
                    await self._follow(chosen)

    async def _follow(self, chosen: Choice) -> None:
        current = self._candidate
        if current is not None and current.bundle.manifest.digest == chosen.sha256 and (
                current.directory == chosen.directory):
            self._install(current, chosen.fraction or 0.0)
            return
        try:
            candidate = await asyncio.to_thread(self._load, chosen.directory)
        except Exception:
            log.exception("the shared shadow choice does not load; no shadow model here")
            return
        self._install(candidate, chosen.fraction or 0.0)

    def _load(self, directory: Path) -> LoadedModel:
        return load_model(directory, self._settings.ort_threads, self._settings.batch_max_size,
                          self._verified)

    def _install(self, candidate: LoadedModel, fraction: float) -> None:
        if self._candidate is not None and self._candidate is not candidate:
            self._metrics.info.labels(*_labels(self._candidate)).set(0)
        self._candidate, self._fraction = candidate, fraction
        self._metrics.info.labels(*_labels(candidate)).set(1)
        self._metrics.fraction.set(fraction)
        log.info("shadow model %s version %s on %.0f%% of requests", candidate.ref.name,
                 candidate.ref.version, 100 * fraction)

    def _take(self) -> list[_Offered]:
        batch, rows = [], 0
        while self._queue and rows < self._settings.batch_max_size:
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item.indices)
        self._pending -= rows
        return batch

    async def _score(self, candidate: LoadedModel, batch: list[_Offered]) -> None:
        kept, inputs = [], []
        for item in batch:
            encoded = self._inputs(candidate, item)
            if encoded is None:
                self._metrics.requests.labels("skipped").inc()
                _give_up([item])
                continue
            kept.append(item)
            inputs.append(encoded)
        if not kept:
            return
        indices = np.concatenate([i for i, _ in inputs])
        weights = np.concatenate([w for _, w in inputs])
        start = time.perf_counter()
        scores = await asyncio.to_thread(candidate.bundle.run, indices, weights)
        self._metrics.run_seconds.observe(time.perf_counter() - start)
        self._compare(candidate, kept, scores)

    def _inputs(self, candidate: LoadedModel, item: _Offered) -> tuple[np.ndarray, np.ndarray] | None:
        """The request's instances in the candidate's input form, or None (it cannot say)."""
        same_space, subset = self._fit(item.live.info, candidate.info)
        if item.instances is None:
            return (item.indices, item.weights) if same_space else None
        instances = item.instances
        if not subset:  # fields the candidate does not have: left out
            names = set(candidate.info.field_kinds)
            instances = [{k: v for k, v in i.items() if k in names} for i in instances]
        try:
            encoded = candidate.bundle.features.encode(instances)
        except FeatureError:
            return None
        return encoded.indices, encoded.weights

    def _fit(self, live: ModelInfo, candidate: ModelInfo) -> tuple[bool, bool]:
        """Whether the two have the same feature space, and whether the candidate has every
        live field (remembered for the last pair of models seen)."""
        fits = self._fits
        if fits is None or fits[0] is not live or fits[1] is not candidate:
            fits = self._fits = (live, candidate, live.fields == candidate.fields,
                                 set(live.field_kinds) <= set(candidate.field_kinds))
        return fits[2], fits[3]

    def _compare(self, candidate: LoadedModel, kept: list[_Offered], scores: Scores) -> None:
        """Scores are compared as served (downsampling shift included), predictions as the
        graphs map them (each model's own calibration)."""
        shadow = scores.score.astype(np.float64)
        live = np.concatenate([item.scores.score for item in kept]).astype(np.float64)
        finite = np.isfinite(shadow)
        observe_many(self._metrics.difference, (shadow - live)[finite])
        predictions = scores.prediction.astype(np.float64)
        live_predictions = np.concatenate([item.scores.prediction for item in kept]).astype(np.float64)
        self._metrics.disagreements.inc(int(np.sum(
            np.abs(predictions - live_predictions)[finite] > self._settings.shadow_threshold)))
        self._rank(live[finite], shadow[finite])
        self._metrics.requests.labels("scored").inc(len(kept))
        self._metrics.instances.inc(len(shadow))
        self._tell(candidate, kept, shadow, predictions)

    def _rank(self, live: np.ndarray, shadow: np.ndarray) -> None:
        """Count the pairs (new instance, recent instance) both models order alike or not."""
        ring_live, ring_shadow = self._ring
        if len(ring_live) and len(live):
            agree = (live[:, None] - ring_live[None]) * (shadow[:, None] - ring_shadow[None])
            self._metrics.rank_pairs.labels("concordant").inc(int(np.sum(agree > 0)))
            self._metrics.rank_pairs.labels("discordant").inc(int(np.sum(agree < 0)))
        self._ring = (np.concatenate([ring_live, live])[-RANK_RING:],
                      np.concatenate([ring_shadow, shadow])[-RANK_RING:])

    def _tell(self, candidate: LoadedModel, kept: list[_Offered], shadow: np.ndarray,
              predictions: np.ndarray) -> None:
        """Fill each request's slot (the impression log's) and tell the listeners."""
        start = 0
        for item in kept:
            end = start + len(item.indices)
            if item.slot is not None:
                item.slot.fill(ShadowValues(candidate.ref.version, shadow[start:end],
                                            predictions[start:end]))
            if self.listeners:
                scored = ShadowScored(item.live.ref, candidate.ref, item.scores.score,
                                      shadow[start:end], predictions[start:end])
                for listener in self.listeners:
                    listener(scored)
            start = end


def _give_up(items: Iterable[_Offered]) -> None:
    """These offers will not be scored: the impression log need not wait for them."""
    for item in items:
        if item.slot is not None:
            item.slot.give_up()


def _labels(model: LoadedModel) -> tuple[str, str, str]:
    return model.ref.name, model.ref.version, model.bundle.manifest.digest
