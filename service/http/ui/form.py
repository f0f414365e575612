"""What the explanation page (/ui) builds its form from: each field's kind, the values it
suggests, and how numbers are read. Framework-free; the route renders it as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from model.features import FieldKind, FieldSpec
from service.codecs.schemas import ModelMetadata

# A datalist of a Criteo field's whole vocabulary (10^5-10^6 values) would make the page
# megabytes long and the browser slow; the vocabulary is most frequent first, so the first
# values are the ones worth suggesting.
MAX_SUGGESTIONS = 500


def form(metadata: ModelMetadata, fields: Sequence[FieldSpec],
         max_suggestions: int = MAX_SUGGESTIONS) -> dict[str, Any]:
    return {
        "model": {"name": metadata.name, "version": metadata.version},
        "kind": metadata.kind,
        "task": metadata.task,
        "label": "probability" if metadata.task == "binary" else "prediction",
        "fields": [field_entry(spec, max_suggestions) for spec in fields],
    }


def field_entry(spec: FieldSpec, max_suggestions: int) -> dict[str, Any]:
    """`values` are suggestions for text fields, and the bucket labels of a bucketised one."""
    known = spec.known
    entry: dict[str, Any] = {
        "name": spec.name, "kind": spec.kind.value, "values": known[:max_suggestions],
        "values_total": len(known), "max_entries": spec.max_entries,
    }
    if spec.kind == FieldKind.NUMERIC:
        entry.update(center=spec.center, scale=spec.scale)
    if spec.kind == FieldKind.BUCKETIZED:
        entry["boundaries"] = list(spec.boundaries)
    return entry
