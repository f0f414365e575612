"""One instance as a query string carries it (`GET /explain?f0=v3&f1=v17`): text for every
value, read as the field's kind takes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model.features import FieldKind
from service.core.errors import InvalidInput


def instance_from_text(kinds: Mapping[str, FieldKind],
                       items: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """`field=text` pairs -> an instance: numbers for numeric fields, lists for multi-valued
    ones (a name given once a value), text for the others."""
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
