"""Which impressions a training day is made of: one model's, of one feature schema.

Each file of the log is checked (the columns the join needs) and inventoried (how many rows
of each model name and version it holds, read from those two columns only). A log of one
model name and one feature schema is taken whole, every version together (a reload during
the day changes the version, not the features); otherwise `--model NAME[:VERSION]` chooses,
and the rest is counted and reported, never mixed in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from model import impressions as im
from training.errors import UsageError

REQUIRED = (im.IMPRESSION_ID, im.TIME, im.MODEL_NAME, im.MODEL_VERSION, im.FEATURES)
Model = tuple[str, str]  # (name, version)


@dataclass(frozen=True)
class ModelChoice:
    """`--model NAME[:VERSION]`."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelChoice:
        name, _, version = text.partition(":")
        if not name or ":" in version or text.endswith(":"):
            raise UsageError(f"--model takes NAME or NAME:VERSION, got {text!r}")
        return cls(name, version or None)

    def takes(self, model: Model) -> bool:
        return model[0] == self.name and self.version in (None, model[1])


@dataclass
class Selection:
    log: list[Path]
    """Every file of the log."""
    files: list[Path]
    """The files that hold impressions of the chosen models."""
    models: list[Model]
    """The chosen (name, version) pairs."""
    features: pa.StructType
    counts: Counter[Model] = field(default_factory=Counter)
    """Impressions per (name, version) in the whole log."""

    @property
    def impressions(self) -> int:
        return sum(n for model, n in self.counts.items() if model in self.models)

    @property
    def versions(self) -> tuple[str, list[str]]:
        """(name, versions) of the chosen models (one name)."""
        return self.models[0][0], [version for _, version in self.models]

    @property
    def others(self) -> dict[str, int]:
        return {f"{n}:{v}": count for (n, v), count in sorted(self.counts.items())
                if (n, v) not in self.models}


@dataclass
class _File:
    path: Path
    features: pa.StructType
    counts: Counter[Model]


def select(root: Path, choice: ModelChoice | None) -> Selection:
    if not root.is_dir():
        raise UsageError(f"no impression log directory {root}: --impressions takes the directory "
                         "the service writes (AFM_IMPRESSION_LOG_DIR)")
    files = im.part_files(root)
    if not files:
        raise UsageError(f"no impression files (*.parquet) under {root}: is it the directory the "
                         "service writes (AFM_IMPRESSION_LOG_DIR)?")
    inventory = [_inventory(path) for path in files]
    counts: Counter[Model] = sum((f.counts for f in inventory), Counter())
    if not counts:
        raise UsageError(f"the impression files under {root} hold no impressions")
    schemas = {model: {f.features for f in inventory if model in f.counts} for model in counts}
    chosen = _choose(counts, schemas, choice)
    kept = [f.path for f in inventory if any(model in f.counts for model in chosen)]
    return Selection(files, kept, chosen, next(iter(schemas[chosen[0]])), counts)


def _inventory(path: Path) -> _File:
    try:
        source = pq.ParquetFile(path)
        schema = source.schema_arrow
        _check_schema(path, schema)
        counts: Counter[Model] = Counter()
        names = [im.MODEL_NAME, im.MODEL_VERSION]
        for batch in source.iter_batches(columns=names, batch_size=1 << 20):
            groups = pa.Table.from_batches([batch]).group_by(names).aggregate([([], "count_all")])
            for name, version, n in zip(*groups.to_pydict().values(), strict=True):
                counts[(name, version)] += n
    except (pa.ArrowInvalid, OSError) as e:
        raise UsageError(f"cannot read impression file {path}: {' '.join(str(e).split())}") from e
    return _File(path, schema.field(im.FEATURES).type, counts)


def _check_schema(path: Path, schema: pa.Schema) -> None:
    missing = [name for name in REQUIRED if name not in schema.names]
    if missing:
        raise UsageError(f"{path} is not an impression file: it lacks {', '.join(missing)} "
                         "(docs/IMPRESSIONS.md)")
    kinds = {name: schema.field(name).type for name in REQUIRED}
    wrong = [f"{name} is {kind}" for name, kind, ok in (
        (im.TIME, kinds[im.TIME], pa.types.is_timestamp(kinds[im.TIME])),
        (im.FEATURES, kinds[im.FEATURES], pa.types.is_struct(kinds[im.FEATURES])),
        *((name, kinds[name], pa.types.is_string(kinds[name]))
          for name in (im.IMPRESSION_ID, im.MODEL_NAME, im.MODEL_VERSION))) if not ok]
    if wrong:
        raise UsageError(f"{path} is not an impression file: {', '.join(wrong)} (docs/IMPRESSIONS.md)")


def _choose(counts: Counter[Model], schemas: dict[Model, set[pa.StructType]],
            choice: ModelChoice | None) -> list[Model]:
    listing = ", ".join(f"{n}:{v} ({count} rows)" for (n, v), count in sorted(counts.items()))
    if choice is None:
        names = {name for name, _ in counts}
        if len(names) > 1 or len(set().union(*schemas.values())) > 1:
            raise UsageError(f"the log holds impressions of more than one model or feature schema "
                             f"({listing}): choose one with --model NAME[:VERSION]")
        return sorted(counts)
    chosen = sorted(model for model in counts if choice.takes(model))
    if not chosen:
        raise UsageError(f"no impressions of --model {choice.name}"
                         f"{':' + choice.version if choice.version else ''} in the log ({listing})")
    if len(set().union(*(schemas[model] for model in chosen))) > 1:
        raise UsageError(f"the versions of model {choice.name} have different fields ({listing}): "
                         "choose one with --model NAME:VERSION")
    return chosen
