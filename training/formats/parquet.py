"""Parquet datasets (`[data] format = "parquet"`): files, directories of part files (Hive-style
day partitions too), globs or lists of these, streamed (`training.parquet`).

The fields are `[data.parquet] fields`, declared as in a tabular schema; without them the
table is Criteo-shaped (label, I1..I13, C1..C26) and goes through the Criteo pipeline,
encoded exactly as the same rows in Criteo-format text would be. afm-eval reads the columns
the model was trained on (recorded in its manifest), or columns named as its fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from model.features import FeatureSpace, FieldKind
from training.config import DataConfig, ParquetOptions
from training.data import Dataset, Prepared
from training.downsample import KeepRates
from training.fields import FieldDecl
from training.formats.base import Format
from training.parquet.files import looks_like_parquet

if TYPE_CHECKING:  # onnxruntime: imported by afm-eval when it loads the bundle; torch: training
    from model.bundle import Bundle
    from training.stream.team import Team

CRITEO_FIELDS = [*(FieldDecl(name=f"I{i}", kind=FieldKind.NUMERIC) for i in range(1, 14)),
                 *(FieldDecl(name=f"C{i}", kind=FieldKind.CATEGORICAL) for i in range(1, 27))]
"""A Criteo-shaped table: integers (or floats) I1..I13, strings C1..C26."""


def prepare(data: DataConfig, cache_root: Path, previous: FeatureSpace | None,
            seed: int = 0, team: Team | None = None) -> Prepared:
    from training import criteo
    from training.parquet.source import Column, ParquetSource
    from training.stream import fit, passes

    if not data.train or not data.validation:
        raise ValueError("format = 'parquet' needs data.train and data.validation datasets")
    options = data.parquet
    columns = [Column.of(d) for d in options.fields or CRITEO_FIELDS]
    train, validation = (ParquetSource(paths, columns, options.label, options.batch_rows, options.piece_rows)
                         for paths in (data.train, data.validation))
    if not options.fields:
        return criteo.prepare_sources(train, validation, data, cache_root, previous,
                                      options.rows_per_shard, seed, team)
    counted = {d.name: d.kind for d in options.fields if d.kind != FieldKind.BUCKETIZED}
    counts = passes.counts(train, counted, cache_root, team)
    space = fit.feature_space(options.fields, counts, data.min_count, options.missing,
                              options.hash_buckets)
    return passes.prepared(space, train, validation, data.task, cache_root, options.rows_per_shard,
                           keep=KeepRates.of(data, seed), team=team)


def read(paths: list[str], bundle: Bundle) -> Iterator[Dataset]:
    """Blocks of a Parquet dataset encoded with the bundle's feature space, one at a time."""
    from training.parquet.source import Column, ParquetSource
    from training.stream import passes

    options = trained_options(bundle)
    declared = {d.name: d for d in options.fields}
    columns = [Column.of(declared.get(spec.name) or _reading_decl(spec.name, spec.kind))
               for spec in bundle.features.fields]
    source = ParquetSource(paths, columns, options.label, options.batch_rows)
    return passes.evaluation(source, bundle.features, bundle.manifest.task)


def trained_options(bundle: Bundle) -> ParquetOptions:
    """The `[data.parquet]` the model was trained with (its label and columns), else defaults."""
    data = bundle.manifest.training.get("data", {})
    recorded = data.get("parquet") if data.get("format") == "parquet" else None
    return ParquetOptions.model_validate(recorded or {})


def _reading_decl(name: str, kind: FieldKind) -> FieldDecl:
    """A field the model has and no declaration names: the column of its name, read by kind."""
    return FieldDecl(name=name, kind=FieldKind.NUMERIC if kind == FieldKind.BUCKETIZED else kind)


FORMAT = Format("parquet", "a Parquet file, a directory of them (Hive-style day=... "
                "directories too) or a glob", prepare, read, looks_like_parquet, on_every_rank=True)
