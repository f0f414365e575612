"""One typed config per run: a TOML file plus `key=value` overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model.manifest import Task


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class DataConfig(_Section):
    format: Literal["libfm", "tabular", "synthetic"]
    train: str = ""
    """Training file (libfm) or the tabular schema file (tabular)."""
    validation: str = ""
    """Validation file (libfm); tabular schemas split the data themselves."""
    root: str = ""
    """Tabular: the folder of the schema's files, overriding the schema's `root`."""
    fields: list[str] = Field(default_factory=list)
    """libFM: a name per position in the row (default field0, field1, ...)."""
    task: Task = "regression"
    min_count: int = Field(default=1, ge=1)
    """Values seen fewer times in training map to the field's out-of-vocabulary index."""
    synthetic: dict[str, Any] = Field(default_factory=dict)
    """Generator settings for format = synthetic (see training.synthetic.SyntheticSpec)."""


class ModelSection(_Section):
    kind: Literal["afm", "fm"] = "afm"
    embed_dim: int = Field(default=256, ge=1)
    attention_dim: int = Field(default=8, ge=1)
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    pair_dropout: float = Field(default=0.5, ge=0.0, lt=1.0)


class TrainSection(_Section):
    optimizer: Literal["adagrad", "adam"] = "adagrad"
    lr: float = Field(default=0.1, gt=0.0)
    batch_size: int = Field(default=4096, ge=1)
    epochs: int = Field(default=100, ge=1)
    patience: int = Field(default=10, ge=1)
    """Stop after this many epochs without a better validation metric; the best is restored."""
    attention_lr: float | None = Field(default=None, gt=0.0)
    """Learning rate of the attention network and p (AFM); default: `lr`. Fine-tuning from an
    FM wants gentle steps on the pretrained embeddings and larger ones on the new weights."""
    attention_l2: float = Field(default=0.0, ge=0.0)
    """lambda of eq. 7: L2 on the attention network's W only, per batch of mean loss."""
    pretrain: str = ""
    """Paper protocol: a config (relative to this one) of the FM to train first and start from."""
    init_from: str = ""
    """A finished FM run directory to start from instead of training `pretrain` again."""
    eval_batch_size: int = Field(default=16384, ge=1)


class RunConfig(_Section):
    name: str
    version: str = "1"
    seed: int = 2017
    data: DataConfig
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    source: str = ""
    """Where the config was read from (filled in by `load_config`)."""


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    path = Path(path)
    with path.open("rb") as f:
        raw = tomllib.load(f)
    for override in overrides or []:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like key=value, got {override!r}")
        _set(raw, key.strip().split("."), _parse_value(value.strip()))
    raw["source"] = str(path)
    return RunConfig.model_validate(raw)


def _parse_value(text: str) -> Any:
    """TOML literal if it is one (numbers, booleans, lists, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ValueError(f"cannot set {'.'.join(keys)}: {key} is not a section")
    tree[keys[-1]] = value
