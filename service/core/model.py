"""A bundle made ready to serve: loaded and verified (`Bundle.load`), warmed up, with what
requests reuse computed once; and what a transport may know of it (`ModelInfo`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from model.bundle import Bundle, BundleError
from model.features import FieldKind, FieldSpec
from model.manifest import Manifest
from model.verification import VerifiedFiles
from service.core.explain import Explainer
from service.core.monitor import Watched
from service.core.results import ModelRef

BIAS_TOLERANCE = 1e-4
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a transport may know of the model being served (routes see nothing else)."""

    ref: ModelRef
    manifest: Manifest
    input_shape: tuple[int, int]  # (F, L): fields and entries a field, after the batch
    field_kinds: Mapping[str, FieldKind]

    @property
    def fields(self) -> list[FieldSpec]:
        """The feature space's fields, vocabularies included."""
        return self.manifest.fields


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    directory: Path
    explainer: Explainer
    info: ModelInfo
    watched: Watched | None  # what drift monitoring needs (None: the bundle has no reference)

    @property
    def ref(self) -> ModelRef:
        return self.info.ref


def load_model(directory: Path, threads: int, warm_rows: int,
               verified: VerifiedFiles | None = None) -> LoadedModel:
    """Load and verify a bundle (Bundle.load), warm it up, precompute what requests reuse."""
    bundle = Bundle.load(directory, threads, verified)
    warm_up(bundle, warm_rows)
    manifest, space = bundle.manifest, bundle.features
    ref = ModelRef.of(manifest)
    return LoadedModel(
        bundle=bundle,
        directory=directory,
        explainer=Explainer(bundle),
        info=ModelInfo(ref=ref, manifest=manifest,
                       input_shape=(space.num_fields, space.max_entries),
                       field_kinds={spec.name: spec.kind for spec in space.fields}),
        watched=Watched.of(bundle),
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


class PerModel(Generic[T]):
    """A value derived from the model being served (a rendering of its metadata), built on
    first use and again only when the model changes (a reload)."""

    def __init__(self, build: Callable[[ModelInfo], T]) -> None:
        self._build = build
        self._cached: tuple[ModelInfo, T] | None = None

    def __call__(self, info: ModelInfo) -> T:
        cached = self._cached
        if cached is None or cached[0] is not info:
            cached = self._cached = (info, self._build(info))
        return cached[1]
