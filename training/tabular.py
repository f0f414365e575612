"""Delimited tabular files declared by a small field schema (TOML).

A schema names a main table (one row per example), tables left-joined onto it by a key
column (many rows to one), the target column, how to split train and validation, and the
fields. Every row becomes a raw instance ({field: value}) and goes through
`FeatureSpace.encode`, the encoder the service uses, so training and serving agree.
Vocabularies and numeric statistics are fitted on the training split only.

File paths are relative to `root`, which is relative to the schema file's folder unless
absolute; `data.root` in a run config overrides it. A header cell `name:type` with a
RecBole atomic-file type (token, token_seq, float, float_seq) names the column `name`.
An empty cell, a value listed in the field's `missing`, or a row without a join partner
leaves the field empty (all weights 0), as a missing field does in a served instance.
"""

from __future__ import annotations

import csv
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.features import FeatureSpace, FieldKind, FieldSpec
from model.manifest import Task
from training.config import DataConfig
from training.data import Dataset, Splits, binary_labels, build_vocabulary, fingerprint, one_path
from training.fields import FieldDecl

log = logging.getLogger(__name__)

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Join(_Strict):
    file: str
    """A table with one row per key, left-joined onto the main table."""
    on: str
    """The key column, present in both tables."""


class Split(_Strict):
    method: Literal["random", "time", "none"] = "random"
    """random: seeded shuffle; time: the latest rows by `column`; none: all rows are evaluated."""
    fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Share of rows in the validation split."""
    seed: int = 2017
    """Seed of the random split."""
    column: str = ""
    """The timestamp column of a time split."""

    @model_validator(mode="after")
    def _check(self) -> Split:
        if (self.method == "time") != bool(self.column):
            raise ValueError("split.column is required by method = 'time' and only by it")
        return self


class Schema(_Strict):
    root: str = "."
    """Folder of the files, relative to the schema file's folder unless absolute."""
    delimiter: str = Field(default="\t", min_length=1, max_length=1)
    main: str
    """The table with one row per example."""
    joins: list[Join] = Field(default_factory=list)
    target: str
    """The label column (a number)."""
    split: Split = Split()
    fields: list[FieldDecl] = Field(min_length=2)

    def columns(self) -> set[str]:
        """Every column the schema reads."""
        used = {self.target, *(f.source for f in self.fields), *(j.on for j in self.joins)}
        return used | ({self.split.column} if self.split.column else set())


def read_schema(path: str | Path) -> Schema:
    with Path(path).open("rb") as f:
        return Schema.model_validate(tomllib.load(f))


@dataclass
class Table:
    frame: pd.DataFrame  # the main table with joined columns, every cell a string
    files: dict[str, Path]  # schema file name -> resolved path


def read_delimited(path: Path, delimiter: str) -> pd.DataFrame:
    """Every cell as a string, nothing parsed as NA or quoted; typed headers stripped."""
    frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False,
                        quoting=csv.QUOTE_NONE, engine="c")
    return frame.rename(columns=_column_name)


def _column_name(header: str) -> str:
    name, sep, kind = header.rpartition(":")
    return name if sep and kind in RECBOLE_TYPES else header


def read_table(schema: Schema, schema_path: Path, root: str = "") -> Table:
    """The main table with the needed columns of every joined table (left joins)."""
    base = schema_path.parent / schema.root if not root else Path(root)
    names = [schema.main, *(j.file for j in schema.joins)]
    files = {name: Path(os.path.normpath(base / name)) for name in names}
    needed = schema.columns()
    frame = read_delimited(files[schema.main], schema.delimiter)
    for join in schema.joins:
        table = read_delimited(files[join.file], schema.delimiter)
        for side, columns in (("main table", frame.columns), (join.file, table.columns)):
            if join.on not in columns:
                raise ValueError(f"join key {join.on!r} is not a column of {side}")
        if table[join.on].duplicated().any():
            raise ValueError(f"{join.file}: join key {join.on!r} is not unique")
        clash = sorted((needed & set(frame.columns) & set(table.columns)) - {join.on})
        if clash:
            raise ValueError(f"columns {clash} of {join.file} are already in the joined table")
        keep = [c for c in table.columns if c in needed and c != join.on]
        frame = frame.merge(table[[join.on, *keep]], on=join.on, how="left", validate="m:1")
    absent = sorted(needed - set(frame.columns))
    if absent:
        raise ValueError(f"columns {absent} are in no table of the schema")
    return Table(frame.fillna(""), files)


def split_rows(split: Split, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the train and validation splits (method none: all are validation)."""
    n = len(frame)
    if split.method == "none":
        return np.arange(0), np.arange(n)
    if split.method == "random":
        order = np.random.default_rng(split.seed).permutation(n)
    else:
        times = pd.to_numeric(frame[split.column], errors="raise").to_numpy()
        order = np.argsort(times, kind="stable")  # ties keep file order
    cut = n - max(1, round(n * split.fraction))
    return np.sort(order[:cut]), np.sort(order[cut:])


def raw_values(decl: FieldDecl, cells: pd.Series) -> list[Any]:
    """A column's cells as instance values (str, list[str] or float), None when missing."""
    absent = cells.eq("") | cells.isin(decl.missing)
    if decl.kind == FieldKind.MULTI:
        return [
            None if skip else [t for t in cell.split(decl.separator) if t and t not in decl.missing]
            for cell, skip in zip(cells.tolist(), absent.tolist(), strict=True)
        ]
    if decl.kind == FieldKind.CATEGORICAL:
        return [None if skip else cell for cell, skip in zip(cells.tolist(), absent.tolist(),
                                                              strict=True)]
    numbers = pd.to_numeric(cells.where(~absent, "nan"), errors="coerce").to_numpy(np.float64)
    bad = np.isnan(numbers) & ~absent.to_numpy()
    if bad.any():
        raise ValueError(f"field {decl.name!r}: {cells[bad].iloc[0]!r} is not a number "
                         "(list it in the field's `missing` if it means no value)")
    return [None if np.isnan(v) else v for v in numbers.tolist()]


def fit_field(decl: FieldDecl, train: list[Any], every: list[Any], min_count: int) -> FieldSpec:
    """A field's spec from its training values (max_entries alone looks at every row)."""
    present = [v for v in train if v is not None]
    if decl.kind == FieldKind.CATEGORICAL:
        return FieldSpec(name=decl.name, kind=decl.kind,
                         vocabulary=build_vocabulary(present, min_count))
    if decl.kind == FieldKind.MULTI:
        longest = max((len(v) for v in every if v is not None), default=1)
        return FieldSpec(name=decl.name, kind=decl.kind, pooling=decl.pooling,
                         max_entries=decl.max_entries or max(longest, 1),
                         vocabulary=build_vocabulary((t for v in present for t in v), min_count))
    if decl.kind == FieldKind.BUCKETIZED:
        return FieldSpec(name=decl.name, kind=decl.kind, boundaries=decl.boundaries)
    center, scale = _normalization(decl.normalization, np.asarray(present, dtype=np.float64))
    return FieldSpec(name=decl.name, kind=decl.kind, center=center, scale=scale)


def _normalization(method: str, values: np.ndarray) -> tuple[float, float]:
    """(center, scale); a constant or empty column keeps scale 1."""
    if method == "none" or values.size == 0:
        return 0.0, 1.0
    if method == "standard":
        center, spread = float(values.mean()), float(values.std())
    else:
        center, spread = float(values.min()), float(values.max() - values.min())
    return center, spread if spread > 0 else 1.0


def encode_rows(space: FeatureSpace, names: list[str], columns: list[list[Any]],
                labels: np.ndarray, rows: np.ndarray) -> Dataset:
    """Encode the given rows through the service's per-instance encoder."""
    picked = [[column[i] for i in rows.tolist()] for column in columns]
    instances = [dict(zip(names, values, strict=True)) for values in zip(*picked, strict=True)]
    encoded = space.encode(instances)
    return Dataset(encoded.indices, encoded.weights, labels[rows], len(encoded.oov))


def target_labels(table: Table, schema: Schema, task: Task) -> np.ndarray:
    labels = pd.to_numeric(table.frame[schema.target], errors="coerce").to_numpy(np.float32)
    if np.isnan(labels).any():
        raise ValueError(f"target {schema.target!r} has empty or non-numeric values")
    return binary_labels(labels, task)


def load(data: DataConfig) -> tuple[FeatureSpace, Splits]:
    """The feature space fitted on the training split, and both splits encoded."""
    schema_path = Path(one_path(data.train, "data.train"))
    schema = read_schema(schema_path)
    if schema.split.method == "none":
        raise ValueError(f"{schema_path}: split.method = 'none' leaves nothing to train on")
    table = read_table(schema, schema_path, data.root)
    train_rows, valid_rows = split_rows(schema.split, table.frame)
    columns = [raw_values(d, table.frame[d.source]) for d in schema.fields]
    specs = [
        fit_field(d, [column[i] for i in train_rows.tolist()], column, data.min_count)
        for d, column in zip(schema.fields, columns, strict=True)
    ]
    space = FeatureSpace(specs)
    names = space.field_names
    labels = target_labels(table, schema, data.task)
    train = encode_rows(space, names, columns, labels, train_rows)
    validation = encode_rows(space, names, columns, labels, valid_rows)
    prints = {"schema": fingerprint(schema_path, len(table.frame))}  # rows: all examples
    prints.update({name: fingerprint(path, _rows(path)) for name, path in table.files.items()})
    return space, Splits(train, validation, prints)


def evaluation_data(schema_path: str | Path, space: FeatureSpace, task: Task) -> Dataset:
    """The schema's validation split (every row with split.method = 'none'), encoded with
    an existing feature space, e.g. a bundle's."""
    schema = read_schema(schema_path)
    table = read_table(schema, Path(schema_path))
    _, rows = split_rows(schema.split, table.frame)
    columns = [raw_values(d, table.frame[d.source]) for d in schema.fields]
    names = [d.name for d in schema.fields]
    return encode_rows(space, names, columns, target_labels(table, schema, task), rows)


def _rows(path: Path) -> int:
    """Data rows of a delimited file with a header line."""
    with path.open("rb") as f:
        return max(sum(1 for line in f if line.strip()) - 1, 0)
