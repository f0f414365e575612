"""What the runtime returns: typed values, free of any wire form (`service.codecs` renders them).

The values made for every request are slotted dataclasses, not frozen ones: a frozen
dataclass's `__init__` sets each field through `object.__setattr__`, about 1 µs an object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.bundle import Scores
from model.features import Encoded
from model.manifest import Manifest, PairImportance, Task

Shown = str | list[str]  # a field's value as a person reads it (a list for a multi-valued field)


# Not slotted: orjson renders a dataclass with a __dict__ several times faster.
@dataclass(frozen=True)
class ModelRef:
    """The model that answered: every response names it."""

    name: str
    version: str

    @classmethod
    def of(cls, manifest: Manifest) -> ModelRef:
        return cls(manifest.name, manifest.version)


@dataclass(slots=True)
class LinearColumns:
    """Each instance's first-order terms, one element per field it holds, in field order."""

    fields: list[list[str]]
    values: list[list[Shown]]
    weights: list[list[float]]  # w_i x_i


@dataclass(slots=True)
class PairColumns:
    """Each instance's pairs shown: present ones, largest |contribution| first."""

    fields: list[list[list[str]]]  # [a, b] field names of each pair
    values: list[list[list[Shown]]]  # [a, b] values of each pair
    attention: list[list[float]]
    contributions: list[list[float]]


@dataclass(slots=True)
class Explanations:
    """The explanations of a batch as parallel columns, element r of each for instance r: a
    dict per pair would cost more than scoring. Both explanation paths fill this, and one
    function renders it (`service.codecs.predictions`)."""

    bias: float
    logit_shift: float  # ln(negative_keep_rate): the downsampling correction, 0 without one
    calibration: str | None  # binary tasks: the map from score to probability (none = sigmoid)
    linear: LinearColumns
    interaction: list[float]  # every present pair's contribution summed, listed or not
    pairs: PairColumns
    pairs_omitted: list[int]  # present pairs left out by top_k


@dataclass(slots=True)
class Predictions:
    """A scored batch, one element per instance in each list."""

    model: ModelRef
    task: Task
    scores: list[float]
    values: list[float]  # sigmoid(score) for a binary task, the clipped score for regression
    oov: list[tuple[int, str, str]]  # (instance, field, value) out of vocabulary, in order
    empty: list[int]  # instances that hold no field (every field missing or null)
    explanations: Explanations | None  # when asked for
    impression_ids: list[str] | None = None  # each instance's id in the impression log, if logged


@dataclass(slots=True)
class EncodedInstances:
    model: ModelRef
    encoded: Encoded


@dataclass(slots=True)
class Inference:
    model: ModelRef
    scores: Scores
    logged_as: str | None = None  # the request id its instances were logged under, if they were


@dataclass(slots=True)
class Importance:
    model: ModelRef
    pairs: list[PairImportance]  # largest mean |contribution| first


@dataclass(frozen=True, slots=True)
class Reloaded:
    model: ModelRef
    sha256: str
    previous: ModelRef


@dataclass(frozen=True, slots=True)
class ShadowStatus:
    """The shadow model scored beside the live one, if any."""

    model: ModelRef  # the live model
    shadow: ModelRef | None
    sha256: str | None
    fraction: float


@dataclass(slots=True)
class ShadowScored:
    """Instances of one live request as the shadow model scored them, after the request was
    answered: what a log of impressions records beside the live scores."""

    live: ModelRef
    shadow: ModelRef
    live_scores: np.ndarray  # (B,)
    scores: np.ndarray  # (B,) the shadow's scores
    predictions: np.ndarray  # (B,) the shadow's probability (binary) or prediction
