"""A Parquet dataset as a `training.stream.Source`: its files read one after the other, row
group by row group and record batch by record batch (memory is bounded by a batch and a row
group's column chunks, never by the rows), and every column normalised to its field's kind.

Arrow types as Spark and pyarrow write them: a categorical field reads strings, dictionary
strings or integers (as their decimal text, as the service encodes an integer value); a
multi-valued field a list of those, or a string split at its separator; a numeric or
bucketised field integers, floats, decimals or booleans. A null, an empty string, a NaN,
or a value the field lists as `missing` is no value. A column the files lack may be a Hive
partition (`day=2026-12-01` on the file's path). Anything else is a one-line error naming
the file, the column and its type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.features import FieldKind
from model.manifest import DataFingerprint
from training.errors import UsageError
from training.fields import FieldDecl
from training.parquet.files import DataFile, resolve
from training.stream import LABEL

Reading = Literal["categorical", "multi", "number"]
Convert = Callable[[pa.Array], pa.Array]
Get = Callable[[pa.RecordBatch], pa.Array]
ACCEPTS = {"categorical": "strings or integers", "multi": "lists of strings or a string",
           "number": "numbers", "label": "numbers or booleans"}


@dataclass(frozen=True)
class Column:
    """How one field is read: from which column, as what."""

    field: str
    source: str
    kind: Reading
    separator: str = " "
    missing: tuple[str, ...] = ()

    @classmethod
    def of(cls, decl: FieldDecl) -> Column:
        kind: Reading = "number" if decl.kind in (FieldKind.NUMERIC, FieldKind.BUCKETIZED) else (
            "multi" if decl.kind == FieldKind.MULTI else "categorical")
        return cls(decl.name, decl.source, kind, decl.separator, tuple(decl.missing))


class ParquetSource:
    """Rows of a Parquet dataset (`training.parquet.files`) as normalised record batches."""

    def __init__(self, paths: str | list[str], columns: list[Column], label: str, batch_rows: int,
                 piece_rows: int = 1 << 20, piece: tuple[DataFile, range] | None = None) -> None:
        """`piece`: a file's row groups (`pieces`), else every file of `paths`."""
        self.paths, self.columns, self.label, self.batch_rows = paths, columns, label, batch_rows
        self.piece_rows, self.piece = piece_rows, piece
        self.files = resolve(paths) if piece is None else [piece[0]]
        self.rows = 0

    @property
    def name(self) -> str:
        first = self.paths if isinstance(self.paths, str) else self.paths[0]
        more = "" if isinstance(self.paths, str) or len(self.paths) == 1 else f"+{len(self.paths) - 1}"
        return (first.rstrip("/").rsplit("/", 1)[-1] + more).replace(" ", "_")

    def key(self) -> dict[str, Any]:
        return {"reader": "parquet", "files": [f.key() for f in self.files], "label": self.label,
                "columns": [asdict(c) for c in self.columns], "piece_rows": self.piece_rows}

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.rows = 0
        for file in self.files:
            for batch in self._file(file):
                if batch.num_rows:  # an empty row group reads as an empty batch
                    self.rows += batch.num_rows
                    yield batch
        if self.piece is None and not self.rows:
            raise self._no_rows()

    def pieces(self) -> list[ParquetSource]:
        """Consecutive row groups of a file, at least `piece_rows` rows a piece where the file
        has them (read off the files' footers)."""
        pieces = []
        for file in self.files:
            first, rows = 0, 0
            sizes = _row_groups(file)
            for group, size in enumerate(sizes):
                rows += size
                if rows >= self.piece_rows or group == len(sizes) - 1:
                    if rows:
                        pieces.append(ParquetSource(self.paths, self.columns, self.label, self.batch_rows,
                                                    self.piece_rows, (file, range(first, group + 1))))
                    first, rows = group + 1, 0
        if not pieces:
            raise self._no_rows()
        return pieces

    def fingerprint(self, rows: int) -> DataFingerprint:
        """The digest of every file's bytes, in order (one more read of the files)."""
        digest = hashlib.sha256()
        for file in self.files:
            with _reading(file), file.filesystem.open_input_stream(file.path) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        return DataFingerprint(path=self.described, sha256=digest.hexdigest(), rows=rows)

    def _no_rows(self) -> UsageError:
        return UsageError(f"{self.described}: no rows in {len(self.files)} Parquet file(s)")

    @property
    def described(self) -> str:
        return self.paths if isinstance(self.paths, str) else ", ".join(self.paths)

    def _file(self, file: DataFile) -> Iterator[pa.RecordBatch]:
        with _reading(file), file.filesystem.open_input_file(file.path) as handle:
            local = file.filesystem.type_name == "local"  # remote: one coalesced read per row group
            parquet = pq.ParquetFile(handle, pre_buffer=not local, buffer_size=0 if not local else 1 << 20)
            schema = parquet.schema_arrow  # the footer: a file that is no Parquet fails here
            getters = [self._getter(file, schema, c.source, c.kind, f"field {c.field!r}",
                                    self._convert(c)) for c in self.columns]
            label = self._getter(file, schema, self.label, "label", "the label (data.parquet.label)",
                                 _label(file, self.label))
            read = sorted({c.source for c in self.columns if c.source in schema.names}
                          | ({self.label} & set(schema.names)))
            names = [LABEL, *(c.field for c in self.columns)]
            # Row group by row group, synchronously: pyarrow.dataset's scanner reads ahead of a
            # slower consumer, up to a whole file's row groups (docs/EXPERIMENTS.md, reading Parquet).
            groups = range(parquet.num_row_groups) if self.piece is None else self.piece[1]
            for group in groups:
                for batch in parquet.iter_batches(self.batch_rows, row_groups=[group], columns=read):
                    yield pa.RecordBatch.from_arrays([label(batch), *(get(batch) for get in getters)],
                                                     names=names)

    def _convert(self, column: Column) -> Callable[[pa.DataType], Convert | None]:
        if column.kind == "number":
            return _number
        if column.kind == "multi":
            return lambda type_: _multi(type_, column.separator, column.missing)
        return lambda type_: _categorical(type_, column.missing)

    def _getter(self, file: DataFile, schema: pa.Schema, source: str, kind: str, what: str,
                convert: Callable[[pa.DataType], Convert | None]) -> Get:
        """batch -> the column `source` normalised; from the file or a Hive partition."""
        if source in schema.names:
            type_ = schema.field(source).type
            normalise = convert(type_)
            if normalise is None:
                raise UsageError(f"{file.name}: column {source!r} is {type_}; {what} takes "
                                 f"{ACCEPTS[kind]}")
            return _named(file, source, normalise)
        partitions = file.partitions()
        if source not in partitions:
            names = ", ".join(schema.names[:12]) + (", ..." if len(schema.names) > 12 else "")
            raise UsageError(f"{file.name}: no column {source!r} ({what}); it has {names}")
        value = _partition_value(file, source, partitions[source], convert)
        return lambda batch: value.take(np.zeros(batch.num_rows, np.int32))


def _row_groups(file: DataFile) -> list[int]:
    """The rows of each of the file's row groups."""
    with _reading(file), file.filesystem.open_input_file(file.path) as handle:
        metadata = pq.ParquetFile(handle).metadata
        return [metadata.row_group(k).num_rows for k in range(metadata.num_row_groups)]


@contextmanager
def _reading(file: DataFile) -> Iterator[None]:
    """Errors from reading a file (not Parquet, truncated, corrupt) name it, in one line."""
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        raise UsageError(f"{file.name}: cannot read it as Parquet: {' '.join(str(e).split())}") from e


def _named(file: DataFile, source: str, normalise: Convert) -> Get:
    """A column's normalisation whose refusals (an infinite number) name the file and column."""
    def get(batch: pa.RecordBatch) -> pa.Array:
        try:
            return normalise(batch.column(source))
        except ValueError as e:
            raise UsageError(f"{file.name}: column {source!r}: {e}") from e
    return get


def _partition_value(file: DataFile, key: str, value: str,
                     convert: Callable[[pa.DataType], Convert | None]) -> pa.Array:
    """A partition's value as a one-row normalised column (text becomes a number if it must)."""
    normalise = convert(pa.string())
    if normalise is not None:
        return normalise(pa.array([value], pa.string()))
    try:
        number = float(value)
    except ValueError as e:
        raise UsageError(f"{file.name}: partition {key}={value} is not a number") from e
    return convert(pa.float64())(pa.array([number], pa.float64()))  # type: ignore[misc]


def _label(file: DataFile, name: str) -> Callable[[pa.DataType], Convert | None]:
    def convert(type_: pa.DataType) -> Convert | None:
        if not _numeric(type_):
            return None

        def labels(array: pa.Array) -> pa.Array:
            if array.null_count:
                raise UsageError(f"{file.name}: column {name!r} (the label) has nulls: every "
                                 "row needs a label")
            return array.cast(pa.float32())
        return labels
    return convert


def _numeric(type_: pa.DataType) -> bool:
    return (pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
            or pa.types.is_boolean(type_))


def _text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _number(type_: pa.DataType) -> Convert | None:
    """Numbers as float64, null where missing (NaN too); infinities are refused."""
    if pa.types.is_null(type_):
        return lambda array: pa.nulls(len(array), pa.float64())
    if not _numeric(type_):
        return None
    if not pa.types.is_floating(type_):
        return lambda array: array.cast(pa.float64())

    def floats(array: pa.Array) -> pa.Array:
        array = array.cast(pa.float64())
        if pc.any(pc.is_inf(array)).as_py():
            raise ValueError(f"a value is infinite: {pc.filter(array, pc.is_inf(array))[0]}")
        return pc.if_else(pc.is_nan(array), pa.scalar(None, pa.float64()), array)
    return floats


def _categorical(type_: pa.DataType, missing: tuple[str, ...]) -> Convert | None:
    """Strings, null where missing ("" and the field's `missing` values)."""
    if pa.types.is_dictionary(type_):
        inner = _categorical(type_.value_type, missing)
        return None if inner is None else lambda array: inner(array.dictionary_decode())
    if pa.types.is_null(type_):
        return lambda array: pa.nulls(len(array), pa.string())
    if not (_text(type_) or pa.types.is_integer(type_)):
        return None
    return lambda array: _blank_to_null(array.cast(pa.string()), missing)


def _blank_to_null(array: pa.Array, missing: tuple[str, ...]) -> pa.Array:
    blank = pc.equal(pc.binary_length(array), 0)
    if missing:
        blank = pc.or_(blank, pc.is_in(array, value_set=pa.array(missing, pa.string())))
    if not pc.any(blank).as_py():
        return array
    return pc.if_else(blank, pa.scalar(None, pa.string()), array)


def _multi(type_: pa.DataType, separator: str, missing: tuple[str, ...]) -> Convert | None:
    """Lists of strings, without empty or missing values; a null list stays null."""
    if pa.types.is_null(type_):
        return lambda array: pa.nulls(len(array), pa.list_(pa.string()))
    if _text(type_):
        return lambda array: _drop_blank(pc.split_pattern(array.cast(pa.string()), separator), missing)
    if not (pa.types.is_list(type_) or pa.types.is_large_list(type_)
            or pa.types.is_fixed_size_list(type_)):
        return None
    value = type_.value_type
    value = value.value_type if pa.types.is_dictionary(value) else value
    if not (_text(value) or pa.types.is_integer(value)):
        return None
    return lambda array: _drop_blank(array.cast(pa.list_(pa.string())), missing)


def _drop_blank(lists: pa.Array, missing: tuple[str, ...]) -> pa.Array:
    values = pc.list_flatten(lists)
    blank = pc.fill_null(pc.equal(pc.binary_length(values), 0), True)
    if missing:
        blank = pc.or_(blank, pc.is_in(values, value_set=pa.array(missing, pa.string())))
    if not pc.any(blank).as_py():
        return lists
    keep = pc.invert(blank)
    rows = pc.list_parent_indices(lists).to_numpy()
    lengths = np.bincount(rows[keep.to_numpy(zero_copy_only=False)], minlength=len(lists))
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, values.filter(keep), mask=lists.is_null())
