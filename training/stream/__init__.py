"""Two streaming passes over Arrow record batches: count, then encode into cached shards.

    source  -> normalised record batches: a LABEL column and one column per field
    counts  -> pass 1: values of categorical and multi-valued fields, numeric moments
    (a format builds its feature space from the counts)
    passes  -> pass 1 and pass 2 cached under the data cache, keyed by the source and settings,
               piece by piece (`Source.pieces`), shared among ranks and workers (`team`)
    encode  -> pass 2: blocks -> (indices, weights, labels), as FeatureSpace.encode would

A source turns its raw data (Criteo-format text, Parquet files) into normalised batches,
whose columns are named by field and typed by kind: string (or dictionary of strings) for a
categorical field, list<string> for a multi-valued one, float64 for a numeric or bucketised
one (null where missing), and the label as a number. Memory is bounded by a batch and the
distinct values, never by the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

    from model.manifest import DataFingerprint

LABEL = "label"


class Source(Protocol):
    """Labelled rows as normalised record batches, one pass at a time."""

    @property
    def name(self) -> str:
        """A short name for progress lines (no spaces)."""
        ...

    def key(self) -> dict[str, Any]:
        """What identifies the rows in a cache key: the raw files (size, mtime) and the
        reading settings that change them."""
        ...

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One pass over every row, in a stable order."""
        ...

    def pieces(self) -> Sequence[Source]:
        """The rows cut into consecutive pieces (byte ranges of a text file, files of a
        dataset), each a source of its own; how they are cut depends on the data and the
        reading settings alone, never on who reads them. One piece if it cannot be cut."""
        ...

    def fingerprint(self, rows: int) -> DataFingerprint:
        """Where the `rows` rows are, and the digest of the raw data (read once more)."""
        ...
