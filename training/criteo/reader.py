"""Criteo-format text, parsed by Arrow's native streaming CSV reader in bounded blocks.

A row is `label, I1..I13, C1..C26`: tab-separated with no header in Criteo's logs,
comma-separated with a header in DeepCTR's sample; an empty column is a missing value
(null); a `.gz` file is decompressed on the fly. Integers may be written as floats
(`260.0`), so the integer columns are read as float64 (exact below 2^53).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from model.manifest import DataFingerprint
from training.config import CriteoOptions
from training.data import file_key
from training.stream import LABEL

INTEGERS = [f"I{i}" for i in range(1, 14)]
CATEGORICALS = [f"C{i}" for i in range(1, 27)]
COLUMNS = [LABEL, *INTEGERS, *CATEGORICALS]
TYPES = {LABEL: pa.float32(), **dict.fromkeys(INTEGERS, pa.float64()),
         **dict.fromkeys(CATEGORICALS, pa.string())}


class _Hashing(io.RawIOBase):
    """A raw file that feeds every byte it reads to a sha256, so a pass over the file also
    fingerprints it without reading it twice."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        self.digest.update(memoryview(buffer)[:n])
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class Reader:
    """A Criteo-format file as a `training.stream.Source`: iterate `batches()`, then read its
    `fingerprint()` (or `sha256` and `rows`)."""

    path: Path
    options: CriteoOptions
    rows: int = 0
    sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def key(self) -> dict[str, Any]:
        return {"reader": "criteo-text", "file": file_key(self.path),
                "delimiter": self.options.delimiter, "header": self.options.header}

    def fingerprint(self) -> DataFingerprint:
        return DataFingerprint(path=str(self.path), sha256=self.sha256, rows=self.rows)

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.rows = 0
        raw = _Hashing(self.path)
        stream: Any = pa.PythonFile(io.BufferedReader(raw, 1 << 20), mode="r")
        if self.path.suffix == ".gz":
            stream = pa.CompressedInputStream(stream, "gzip")
        read = pacsv.ReadOptions(column_names=COLUMNS, skip_rows=int(self.options.header),
                                 block_size=self.options.block_bytes)
        parse = pacsv.ParseOptions(delimiter=self.options.delimiter, quote_char=False)
        convert = pacsv.ConvertOptions(column_types=TYPES, null_values=[""],
                                       strings_can_be_null=True, include_columns=COLUMNS)
        try:
            with pacsv.open_csv(stream, read, parse, convert) as reader:
                for batch in reader:
                    self.rows += batch.num_rows
                    yield batch
            while raw.read(1 << 20):  # a header-only or trailing part the parser left unread
                pass
        finally:
            self.sha256 = raw.digest.hexdigest()
            stream.close()
            raw.close()


def sniff(path: Path) -> tuple[str, bool]:
    """(delimiter, header) of a Criteo-format file from its first line: a tab if it holds
    one, else a comma; a header if the first column is not a number (e.g. `label`)."""
    with (pa.input_stream(str(path), compression="detect")) as f:
        first = f.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace")
    delimiter = "\t" if "\t" in first else ","
    label = first.split(delimiter, 1)[0].strip()
    try:
        float(label)
        return delimiter, False
    except ValueError:
        return delimiter, True
