"""What the model saw at training, as drift monitoring compares traffic with it (torch-free).

A bundle's manifest may carry a `Reference`, measured on the validation rows when the
bundle was written (`training.reference`): each field's distribution over a few bins, and
the distribution of the score. The service counts what it scores into the same bins
(`Bins`, the one place that maps encoded rows to bins, used on both sides) and compares
with the population stability index (`psi`). Statistics are taken on the encoded rows,
what the model reads, so that a request of field values and one of raw tensors count alike.

A field's bins:

- categorical, multi-valued, bucketised: one bin for each of its most frequent values
  (at most TOP_VALUES, most frequent first), then `<other>` (every other known value),
  `<oov>` (out of vocabulary, hashed ones included), `<missing>` (absent, null, or the
  field's learned missing index). A multi-valued field counts each value it holds, and an
  instance holding none once as missing.
- numeric: the bins between its decile edges on the encoded value ((value - center) /
  scale), then `<missing>`. An encoded value of exactly 0 is missing: the model reads such
  a field as absent.

PSI = sum over bins of (o - r) ln(o / r), o and r the online and reference shares, each
raised to at least EPSILON so that a bin empty on one side counts as rare, not infinite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.features import FeatureSpace, FieldKind
from model.vocabulary import MappedVocabulary

TOP_VALUES = 20
QUANTILES = 10
EPSILON = 1e-4
OTHER, OOV, MISSING = "<other>", "<oov>", "<missing>"
SHARE_TOLERANCE = 1e-3


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldReference(_Strict):
    name: str
    kind: Literal["values", "quantiles"]
    """values: categorical, multi-valued and bucketised fields; quantiles: numeric ones."""
    values: list[str] = Field(default_factory=list)
    """values: the most frequent values, most frequent first; their bins come first."""
    edges: list[float] = Field(default_factory=list)
    """quantiles: increasing inner bin edges on the encoded value (len(edges) + 1 bins)."""
    shares: list[float]
    """Each bin's share of the field's observations on the validation rows."""

    @model_validator(mode="after")
    def _consistent(self) -> FieldReference:
        if self.kind == "values" and self.edges or self.kind == "quantiles" and self.values:
            raise ValueError(f"field {self.name!r}: {self.kind} bins take no "
                             f"{'edges' if self.kind == 'values' else 'values'}")
        if self.edges != sorted(set(self.edges)):
            raise ValueError(f"field {self.name!r}: edges must be increasing")
        _check_shares(f"field {self.name!r}", self.shares, len(self.bin_names()))
        return self

    def bin_names(self) -> list[str]:
        if self.kind == "values":
            return [*self.values, OTHER, OOV, MISSING]
        edges = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
        return [*(f"[{lo},{hi})" for lo, hi in zip(edges, edges[1:], strict=False)), MISSING]


class ScoreReference(_Strict):
    edges: list[float]
    """Increasing inner edges of the score's bins (its deciles on the validation rows)."""
    shares: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> ScoreReference:
        if self.edges != sorted(set(self.edges)):
            raise ValueError("score edges must be increasing")
        _check_shares("the score", self.shares, len(self.edges) + 1)
        return self


class Reference(_Strict):
    rows: int = Field(ge=1)
    """Validation rows the reference was measured on."""
    fields: list[FieldReference]
    score: ScoreReference

    def check(self, space: FeatureSpace) -> None:
        """ValueError unless the reference describes this feature space's fields."""
        if [f.name for f in self.fields] != space.field_names:
            raise ValueError("reference fields do not match the model's fields")
        for spec, field in zip(space.fields, self.fields, strict=True):
            if (spec.kind == FieldKind.NUMERIC) != (field.kind == "quantiles"):
                raise ValueError(f"reference field {spec.name!r}: {field.kind} bins for a "
                                 f"{spec.kind} field")
            known = spec.known if isinstance(spec.known, MappedVocabulary) else set(spec.known)
            unknown = {value for value in field.values if value not in known}
            if unknown:
                raise ValueError(f"reference field {spec.name!r}: values not in its vocabulary: "
                                 f"{sorted(unknown)[:3]}")


def _check_shares(owner: str, shares: Sequence[float], bins: int) -> None:
    if len(shares) != bins:
        raise ValueError(f"{owner}: {len(shares)} shares for {bins} bins")
    if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > SHARE_TOLERANCE:
        raise ValueError(f"{owner}: shares must be non-negative and add up to 1")


class Bins:
    """Encoded rows -> counts per bin of every field, in one flat vector (each field's bins
    in field order, `starts` marking where each begins), and scores -> counts per bin."""

    def __init__(self, space: FeatureSpace, reference: Reference) -> None:
        reference.check(space)
        self.space = space
        self.names = space.field_names
        sizes = [len(f.bin_names()) for f in reference.fields]
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.size = int(sum(sizes))
        self.expected = np.concatenate([f.shares for f in reference.fields])
        self.score_edges = np.asarray(reference.score.edges, np.float64)
        self.score_expected = np.asarray(reference.score.shares, np.float64)
        numeric = [p for p, spec in enumerate(space.fields) if spec.kind == FieldKind.NUMERIC]
        self._numeric = np.asarray(numeric, np.int64)
        self._valued = np.asarray([p for p in range(space.num_fields) if p not in numeric], np.int64)
        self._index_bin = self._index_table(reference)
        self._missing_bin = self.starts + np.asarray(sizes) - 1  # (F,) each field's <missing>
        width = max((len(reference.fields[p].edges) for p in numeric), default=0)
        self._edges = np.full((len(numeric), width), np.inf)  # (N, E) padded with inf
        self._numeric_missing = np.full(len(numeric), -1, np.int64)
        for n, p in enumerate(numeric):
            edges = reference.fields[p].edges
            self._edges[n, : len(edges)] = edges
            self._numeric_missing[n] = space.missing_index(p) or -1
        self.oov_bins = {self.names[p]: int(self.starts[p] + len(reference.fields[p].values) + 1)
                         for p in self._valued.tolist()}

    def _index_table(self, reference: Reference) -> np.ndarray:
        """(num_features,) the flat bin of each feature index of a valued field (-1 else)."""
        table = np.full(self.space.num_features, -1, np.int64)
        for p in self._valued.tolist():
            spec, field, start = self.space.fields[p], reference.fields[p], int(self.starts[p])
            offset, top = self.space.offsets[p], len(field.values)
            table[offset : offset + spec.table_size] = start + top  # <other>
            table[offset] = start + top + 1  # the OOV index
            if spec.hash_buckets:
                first = offset + spec.hash_offset
                table[first : first + spec.hash_buckets] = start + top + 1
            missing = self.space.missing_index(p)
            if missing is not None:
                table[missing] = start + top + 2
            for k, value in enumerate(field.values):
                index = self.space.index_of(p, value)
                assert index is not None  # Reference.check: every value is known
                table[index] = start + k
        return table

    def count(self, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(B, F, L) encoded rows -> (size,) counts per bin."""
        parts = []
        if len(self._valued):
            valued_w = weights[:, self._valued]  # (B, V, L)
            held = valued_w != 0
            parts.append(self._index_bin[indices[:, self._valued][held]])
            empty = ~held.any(axis=2)  # (B, V): no value held
            parts.append(np.broadcast_to(self._missing_bin[self._valued], empty.shape)[empty])
        if len(self._numeric):
            values = weights[:, self._numeric, 0]  # (B, N)
            missing = (values == 0) | (indices[:, self._numeric, 0] == self._numeric_missing)
            bins = (values[:, :, None] >= self._edges[None]).sum(axis=2)  # (B, N)
            bins = np.where(missing, self._missing_bin[self._numeric], self.starts[self._numeric] + bins)
            parts.append(bins.ravel())
        return np.bincount(np.concatenate(parts), minlength=self.size)

    def count_scores(self, scores: np.ndarray) -> np.ndarray:
        """(B,) scores -> counts per score bin (bin k holds edges[k-1] <= s < edges[k])."""
        bins = np.searchsorted(self.score_edges, scores, side="right")
        return np.bincount(bins, minlength=len(self.score_expected))

    def field_psi(self, counts: np.ndarray) -> np.ndarray:
        """(size,) counts -> (F,) each field's PSI against the reference."""
        totals = np.add.reduceat(counts, self.starts)  # (F,) observations per field
        field_of_bin = np.repeat(np.arange(len(self.starts)), np.diff([*self.starts, self.size]))
        online = counts / np.maximum(totals[field_of_bin], 1)
        return np.add.reduceat(_psi_terms(online, self.expected), self.starts)

    def score_psi(self, counts: np.ndarray) -> float:
        online = counts / max(int(counts.sum()), 1)
        return float(_psi_terms(online, self.score_expected).sum())

    def oov_shares(self, counts: np.ndarray) -> dict[str, tuple[float, float]]:
        """Valued fields' out-of-vocabulary share: (online, reference)."""
        totals = np.add.reduceat(counts, self.starts)
        out = {}
        for p in self._valued.tolist():
            bin_ = self.oov_bins[self.names[p]]
            out[self.names[p]] = (float(counts[bin_] / max(int(totals[p]), 1)),
                                  float(self.expected[bin_]))
        return out


def _psi_terms(online: np.ndarray, expected: np.ndarray) -> np.ndarray:
    o, r = np.maximum(online, EPSILON), np.maximum(expected, EPSILON)
    return (o - r) * np.log(o / r)


def psi(online: Sequence[float] | np.ndarray, expected: Sequence[float] | np.ndarray) -> float:
    """The population stability index of two distributions over the same bins."""
    return float(_psi_terms(np.asarray(online, np.float64), np.asarray(expected, np.float64)).sum())
