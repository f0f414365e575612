"""Fields declared by name, source column and kind: the language of tabular schemas
(`training.tabular`) and of Parquet tables (`[data.parquet] fields`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.features import FieldKind

# Options that only some kinds take: setting one on another kind is a schema error.
KIND_OPTIONS: dict[str, tuple[FieldKind, ...]] = {
    "separator": (FieldKind.MULTI,),
    "pooling": (FieldKind.MULTI,),
    "max_entries": (FieldKind.MULTI,),
    "normalization": (FieldKind.NUMERIC,),
    "boundaries": (FieldKind.BUCKETIZED,),
}


class FieldDecl(BaseModel):
    """One field: its name (as served), the column it is read from, its kind and options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    column: str = ""
    """Source column (default: the field's name)."""
    kind: FieldKind
    separator: str = Field(default=" ", min_length=1)
    """Multi: the separator between values in a cell."""
    pooling: Literal["mean", "sum"] = "mean"
    """Multi: how the values' embeddings combine."""
    max_entries: int | None = Field(default=None, ge=1)
    """Multi: most values a cell may hold (default: the most found in the files)."""
    normalization: Literal["standard", "minmax", "none"] = "standard"
    """Numeric: weight = (value - center) / scale, with center and scale fitted on train."""
    boundaries: list[float] = Field(default_factory=list)
    """Bucketised: sorted bucket edges."""
    missing: list[str] = Field(default_factory=list)
    """Cell values that mean 'no value' (an empty cell always does)."""

    @model_validator(mode="after")
    def _check(self) -> FieldDecl:
        for option, kinds in KIND_OPTIONS.items():  # a default value (as dumped) is no setting
            default = type(self).model_fields[option].get_default(call_default_factory=True)
            if option in self.model_fields_set and getattr(self, option) != default \
                    and self.kind not in kinds:
                raise ValueError(f"field {self.name!r}: {option} does not apply to {self.kind}")
        if self.kind == FieldKind.BUCKETIZED and not self.boundaries:
            raise ValueError(f"field {self.name!r}: bucketized fields need boundaries")
        return self

    @property
    def source(self) -> str:
        return self.column or self.name
