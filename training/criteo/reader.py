"""Criteo-format text, parsed by Arrow's native streaming CSV reader in bounded blocks.

A row is `label, I1..I13, C1..C26`: tab-separated with no header in Criteo's logs,
comma-separated with a header in DeepCTR's sample; an empty column is a missing value
(null); a `.gz` file is decompressed on the fly. Integers may be written as floats
(`260.0`), so the integer columns are read as float64 (exact below 2^53). A plain file is
read in pieces of whole lines (`Reader.pieces`), which ranks and worker processes count and
encode side by side.
"""

from __future__ import annotations

import hashlib
import io
import itertools
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


class _Range(io.RawIOBase):
    """Bytes [start, stop) of a file, as a raw stream."""

    def __init__(self, path: Path, start: int, stop: int | None) -> None:
        self._file = path.open("rb")
        self._file.seek(start)
        self._left = stop - start if stop is not None else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        if self._left is not None:
            view = view[: self._left]
        n = self._file.readinto(view)
        if self._left is not None:
            self._left -= n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class Reader:
    """A Criteo-format file, or its bytes [start, stop) (whole lines: a piece), as a
    `training.stream.Source`."""

    path: Path
    options: CriteoOptions
    start: int = 0
    stop: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def key(self) -> dict[str, Any]:
        return {"reader": "criteo-text", "file": file_key(self.path),
                "delimiter": self.options.delimiter, "header": self.options.header,
                "piece_bytes": self.options.piece_bytes}

    def fingerprint(self, rows: int) -> DataFingerprint:
        with self.path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return DataFingerprint(path=str(self.path), sha256=digest, rows=rows)

    def pieces(self) -> list[Reader]:
        """Byte ranges of about `options.piece_bytes`, each starting at a line's start; a
        gzip file is one piece."""
        if self.path.suffix == ".gz":
            return [self]
        size = self.path.stat().st_size
        cuts = {line_start(self.path, at) for at in range(self.options.piece_bytes, size,
                                                           self.options.piece_bytes)}
        bounds = [0, *sorted(c for c in cuts if 0 < c < size), size]
        return [Reader(self.path, self.options, a, b) for a, b in itertools.pairwise(bounds)]

    def batches(self) -> Iterator[pa.RecordBatch]:
        raw = _Range(self.path, self.start, self.stop)
        stream: Any = pa.PythonFile(io.BufferedReader(raw, 1 << 20), mode="r")
        if self.path.suffix == ".gz":
            stream = pa.CompressedInputStream(stream, "gzip")
        header = self.options.header and self.start == 0
        read = pacsv.ReadOptions(column_names=COLUMNS, skip_rows=int(header),
                                 block_size=self.options.block_bytes)
        parse = pacsv.ParseOptions(delimiter=self.options.delimiter, quote_char=False)
        convert = pacsv.ConvertOptions(column_types=TYPES, null_values=[""],
                                       strings_can_be_null=True, include_columns=COLUMNS)
        try:
            with pacsv.open_csv(stream, read, parse, convert) as reader:
                yield from reader
        finally:
            stream.close()
            raw.close()


def line_start(path: Path, at: int) -> int:
    """The offset of the first line that starts at or after `at` (the file's size if none)."""
    with path.open("rb") as f:
        f.seek(max(at - 1, 0))
        while chunk := f.read(1 << 16):
            newline = chunk.find(b"\n")
            if newline >= 0:
                return f.tell() - len(chunk) + newline + 1
        return f.tell()


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
