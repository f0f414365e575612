"""The runtime's checks of what it is given and what the model answers, whatever the
transport: batch sizes, the text of unknown values, raw tensors, and the scores."""

from __future__ import annotations

import re

import numpy as np

from model.bundle import Bundle, Scores
from service.core.errors import InvalidInput, TooLarge

MAX_VALUE_CHARS = 1024
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def check_count(count: int, max_instances: int) -> None:
    if count > max_instances:
        raise TooLarge(f"at most {max_instances} instances per request, got {count}")
    if count == 0:
        raise InvalidInput("no instances given")


def check_text(oov: list[tuple[int, str, str]]) -> None:
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


def check_tensors(bundle: Bundle, indices: np.ndarray, weights: np.ndarray,
                  max_instances: int) -> None:
    """Raw tensors (B, F, L), as the Open Inference Protocol sends them: the model's shape,
    a batch within the limit, indices inside the model's table, finite weights."""
    space = bundle.features
    expected = (space.num_fields, space.max_entries)
    if indices.ndim != 3 or indices.shape[1:] != expected or indices.shape != weights.shape:
        raise InvalidInput(
            f"indices and weights must both have shape [B, {expected[0]}, {expected[1]}], "
            f"got {list(indices.shape)} and {list(weights.shape)}"
        )
    check_count(len(indices), max_instances)
    try:
        bundle.check_indices(indices)
    except ValueError as e:
        raise InvalidInput(str(e)) from e
    if not np.isfinite(weights).all():
        raise InvalidInput("weights must be finite numbers")


def check_scores(scores: Scores) -> None:
    """Extreme but finite inputs can still drive the graph to inf or NaN: never answer those."""
    if np.isfinite(scores.score).all():
        return
    bad = np.flatnonzero(~np.isfinite(scores.score))
    if len(bad):
        raise InvalidInput(
            f"instance {int(bad[0])}: the model's score is not finite (extreme numeric values?)"
        )
