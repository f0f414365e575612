"""The serving runtime, free of HTTP: load, verify, warm up, predict, explain, reload.

A request takes the current `LoadedModel` once and uses it to the end, so a reload (which
loads, verifies and warms up the new bundle beside the old, then swaps one reference)
never changes the model under a request that is running. A bundle that fails any step
is refused and the old model keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from model.bundle import Bundle, BundleError, Scores
from model.features import Encoded, FeatureError, FeatureSpace, FieldKind, FieldSpec
from model.manifest import PairImportance
from service import metadata
from service.batcher import Batcher
from service.errors import Forbidden, InvalidInput, NotFound, NotReady, ReloadRefused, TooLarge
from service.explain import Explainer
from service.metrics import Metrics
from service.model_choice import Choice, SharedChoice
from service.schemas import ModelMetadata, OIPModelMetadata
from service.settings import Settings

log = logging.getLogger("service.runtime")
BIAS_TOLERANCE = 1e-4
MAX_VALUE_CHARS = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class ModelRef(TypedDict):
    """The model that answered; a dict because every response carries it as it is."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a transport may know of the model being served (routes see nothing else)."""

    ref: ModelRef
    input_shape: tuple[int, int]  # (F, L): fields and entries a field, after the batch
    metadata: ModelMetadata
    oip_metadata: OIPModelMetadata
    fields: tuple[FieldSpec, ...]  # the feature space's fields, vocabularies included


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    directory: Path
    explainer: Explainer
    info: ModelInfo

    @property
    def ref(self) -> ModelRef:
        return self.info.ref


@dataclass(frozen=True, slots=True)
class Predictions:
    """One JSON-ready result per instance (score, probability or prediction, oov, and the
    explanation when asked), as `service.explain` builds them: rendered as they are, since
    a typed object per instance would cost more than the model run at 256 instances."""

    model: ModelRef
    predictions: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EncodedInstances:
    model: ModelRef
    encoded: Encoded


@dataclass(frozen=True, slots=True)
class Inference:
    model: ModelRef
    scores: Scores


@dataclass(frozen=True, slots=True)
class Importance:
    model: ModelRef
    pairs: list[PairImportance]  # largest mean |contribution| first


@dataclass(frozen=True, slots=True)
class Reloaded:
    model: ModelRef
    sha256: str
    previous: ModelRef


def load_model(directory: Path, threads: int, warm_rows: int) -> LoadedModel:
    """Load and verify a bundle (Bundle.load), warm it up, precompute what requests reuse."""
    bundle = Bundle.load(directory, threads)
    warm_up(bundle, warm_rows)
    manifest = bundle.manifest
    return LoadedModel(
        bundle=bundle,
        directory=directory,
        explainer=Explainer(bundle),
        info=ModelInfo(
            ref={"name": manifest.name, "version": manifest.version},
            input_shape=(bundle.features.num_fields, bundle.features.max_entries),
            metadata=metadata.model_metadata(bundle),
            oip_metadata=metadata.oip_metadata(bundle),
            fields=tuple(manifest.fields),
        ),
    )


def warm_up(bundle: Bundle, rows: int) -> None:
    """Run the model once per batch size it will see first; an empty instance must score
    exactly the manifest's bias plus its logit shift, which catches a manifest paired with the
    wrong graph."""
    space = bundle.features
    expected = bundle.manifest.bias + bundle.manifest.logit_shift
    for batch in (1, rows):
        shape = (batch, space.num_fields, space.max_entries)
        scores = bundle.run(np.zeros(shape, np.int64), np.zeros(shape, np.float32))
        if not np.all(np.abs(scores.score - expected) <= BIAS_TOLERANCE):
            raise BundleError(
                f"warm-up: an empty instance scores {float(scores.score[0]):.6g}, "
                f"not the manifest's bias + logit_shift {expected:.6g}"
            )
    space.encode([{}])


class Runtime:
    def __init__(
        self, settings: Settings, metrics: Metrics, shared: SharedChoice | None = None
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._shared = shared
        self._model: LoadedModel | None = None
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._batcher = Batcher(self._timed_run, settings.batch_max_size,
                                settings.batch_max_wait_s, settings.thread_min_instances or None)

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
        log.info("serving %s version %s", model.ref["name"], model.ref["version"])

    async def stop(self) -> None:
        """Stop reporting ready and run whatever the batcher still holds."""
        self._ready = False
        self._batcher.close()

    def info(self, name: str | None = None, version: str | None = None) -> ModelInfo:
        """The model being served (NotReady before there is one); when `name` is given, only
        if it is that model, and that version when `version` is given (else NotFound)."""
        info = self.model.info
        if name is not None and (
            name != info.ref["name"] or version not in (None, info.ref["version"])
        ):
            wanted = name if version is None else f"{name} version {version}"
            raise NotFound(f"model {wanted} is not served")
        return info

    async def predict(
        self, instances: Sequence[Mapping[str, Any]], explain: bool, top_k: int | None = None
    ) -> Predictions:
        model, encoded = self._encode(instances)
        scores = await self._batcher.run(model.bundle, encoded.indices, encoded.weights)
        _check_scores(scores)
        self._metrics.observe_scored(scores.score, encoded.oov)
        results = model.explainer.predictions(encoded, scores, explain, top_k)
        return Predictions(model.ref, results)

    def encode(self, instances: Sequence[Mapping[str, Any]]) -> EncodedInstances:
        """Field values -> the model's input tensors, with the values out of vocabulary."""
        model, encoded = self._encode(instances)
        return EncodedInstances(model.ref, encoded)

    def _encode(self, instances: Sequence[Mapping[str, Any]]) -> tuple[LoadedModel, Encoded]:
        model = self.model
        self._check_batch(len(instances))
        try:  # refuses, naming the field, numbers that overflow float32 once normalised
            encoded = model.bundle.features.encode(instances)
        except FeatureError as e:
            raise InvalidInput(str(e)) from e
        _check_text(encoded.oov)
        return model, encoded

    async def explain(self, items: Sequence[tuple[str, str]]) -> Predictions:
        """One instance given as `field=text` pairs (a query string), with every pair it holds."""
        instance = instance_from_text(self.model.bundle.features, items)
        return await self.predict([instance], explain=True)

    def importance(self) -> Importance:
        model = self.model
        return Importance(model.ref, model.explainer.importance())

    async def infer(self, indices: np.ndarray, weights: np.ndarray) -> Inference:
        """Raw tensors (B, F, L), as the Open Inference Protocol sends them."""
        model = self.model
        space = model.bundle.features
        expected = (space.num_fields, space.max_entries)
        if indices.ndim != 3 or indices.shape[1:] != expected or indices.shape != weights.shape:
            raise InvalidInput(
                f"indices and weights must both have shape [B, {expected[0]}, {expected[1]}], "
                f"got {list(indices.shape)} and {list(weights.shape)}"
            )
        self._check_batch(len(indices))
        try:
            model.bundle.check_indices(indices)
        except ValueError as e:
            raise InvalidInput(str(e)) from e
        if not np.isfinite(weights).all():
            raise InvalidInput("weights must be finite numbers")
        scores = await self._batcher.run(model.bundle, indices, weights)
        _check_scores(scores)
        self._metrics.observe_scored(scores.score, ())
        return Inference(model.ref, scores)

    async def reload(self, requested: str | None) -> Reloaded:
        """Refuses the bundle (ReloadRefused) and keeps serving on failure; on success the
        other workers are told to follow."""
        directory = resolve_bundle(requested, self.model.directory, self._settings.models_root)
        before, model = await self._swap(directory, requested or self.model.ref["name"])
        sha256 = model.bundle.manifest.onnx_sha256
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
                and chosen.sha256 == current.bundle.manifest.onnx_sha256
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
                reason = _public_reason(e, directory, label)
                log.warning("reload refused: %s", reason, exc_info=not isinstance(e, BundleError))
                raise ReloadRefused(f"reload refused, still serving version "
                                    f"{before.ref['version']}: {reason}") from e
            self._install(model, before)
            self._metrics.reloads.labels("success").inc()
            log.info("reloaded: %s version %s (was %s)", model.ref["name"],
                     model.ref["version"], before.ref["version"])
            return before, model

    def _load(self, directory: Path) -> LoadedModel:
        return load_model(directory, self._settings.ort_threads, self._settings.batch_max_size)

    def _install(self, model: LoadedModel, before: LoadedModel | None = None) -> None:
        self._model = model  # one reference swap: requests already running keep `before`
        self._metrics.serving(model.bundle.manifest, before.bundle.manifest if before else None)

    def _timed_run(self, bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> Scores:
        start = time.perf_counter()
        scores = bundle.run(indices, weights)
        self._metrics.observe_run(time.perf_counter() - start, len(indices))
        return scores

    def _check_batch(self, count: int) -> None:
        if count > self._settings.max_instances:
            raise TooLarge(
                f"at most {self._settings.max_instances} instances per request, got {count}"
            )
        if count == 0:
            raise InvalidInput("no instances given")


def instance_from_text(space: FeatureSpace, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Query strings carry text: numbers for numeric fields, lists for multi-valued ones."""
    kinds = {spec.name: spec.kind for spec in space.fields}
    instance: dict[str, Any] = {}
    for name, text in items:
        kind = kinds.get(name)
        if kind is None:
            raise InvalidInput(f"unknown field {name!r}")
        if kind == FieldKind.MULTI:
            instance.setdefault(name, []).append(text)
            continue
        if name in instance:
            raise InvalidInput(f"field {name!r} given more than once")
        instance[name] = _number(name, text) if kind in (FieldKind.NUMERIC,
                                                         FieldKind.BUCKETIZED) else text
    return instance


def _number(name: str, text: str) -> float:
    """Text as a number; the feature space refuses what no field takes (NaN, infinities)."""
    try:
        return float(text)
    except ValueError as e:
        raise InvalidInput(f"field {name!r} takes a number, got {text[:64]!r}") from e


def _check_text(oov: list[tuple[int, str, str]]) -> None:
    """Unknown values are echoed back (and logged), so they must be short, printable,
    encodable text: JSON allows lone surrogates (\\ud800) that no UTF-8 response can carry."""
    for row, field, value in oov:
        if len(value) > MAX_VALUE_CHARS:
            raise InvalidInput(f"instance {row}: field {field!r} holds a value longer than "
                               f"{MAX_VALUE_CHARS} characters")
        if _CONTROL.search(value):
            raise InvalidInput(f"instance {row}: field {field!r} holds control characters")
        try:
            value.encode()
        except UnicodeEncodeError as e:
            raise InvalidInput(
                f"instance {row}: field {field!r} holds a value that is not valid Unicode"
            ) from e


def _check_scores(scores: Scores) -> None:
    """Extreme but finite inputs can still drive the graph to inf or NaN: never answer those."""
    bad = np.flatnonzero(~np.isfinite(scores.score))
    if len(bad):
        raise InvalidInput(
            f"instance {int(bad[0])}: the model's score is not finite (extreme numeric values?)"
        )


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


def _public_reason(error: Exception, directory: Path, label: str) -> str:
    """The reason without server paths or internals."""
    if isinstance(error, BundleError):
        return str(error).replace(str(directory), label)
    return f"unexpected {type(error).__name__} while loading the bundle"
