"""One typed config per run: a TOML file plus `key=value` overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.manifest import Task
from training.fields import FieldDecl
from training.metrics import monitored
from training.stream import LABEL

CLICK_LOGS = ("criteo", "parquet")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class CriteoOptions(_Section):
    """`[data.criteo]`: how Criteo-format logs (label, I1..I13, C1..C26) are read and encoded."""

    delimiter: str = Field(default="\t", min_length=1, max_length=1)
    """Column separator: tab in Criteo's logs, "," in DeepCTR's sample."""
    header: bool = False
    """Whether the first line names the columns (it is skipped; columns are taken by position)."""
    integers: Literal["log_buckets", "numeric"] = "log_buckets"
    """I1..I13: categorical buckets of floor(ln(x)^2) for x > 2 and x itself below (the Kaggle
    winners' transform), or one numeric feature each, standardised on the training data."""
    missing: Literal["learned", "empty"] = "learned"
    """An empty column: its field's own learned index, or no entry (the field is left out)."""
    hash_buckets: int = Field(default=0, ge=0)
    """C1..C26: indices per field for values under min_count, by crc32(value) % n (0: one OOV index)."""
    keep_dropped: bool = False
    """Retraining from a previous bundle: keep old values that fell under min_count in the vocabulary."""
    rows_per_shard: int = Field(default=1 << 19, ge=1)
    """Rows per encoded shard on disk."""
    block_bytes: int = Field(default=1 << 22, ge=1 << 16)
    """Bytes of text the CSV reader parses at a time (memory is bounded by this and the vocabulary)."""
    piece_bytes: int = Field(default=1 << 27, ge=1 << 16)
    """Bytes of text per piece: the unit of work that ranks and `data.workers` share (a
    piece's rows are counted and encoded into shards of their own; gzip files are one piece)."""


class ParquetOptions(_Section):
    """`[data.parquet]`: which columns of a Parquet dataset are the label and the fields."""

    label: str = Field(default="label", min_length=1)
    """The label column: a number or a boolean (binary tasks: a positive value is a click)."""
    fields: list[FieldDecl] = Field(default_factory=list)
    """The fields, declared as in a tabular schema (`{name, column, kind, ...}`; kinds
    categorical, multi (a list<string> column, or a string split at `separator`), numeric,
    bucketized). None: a Criteo-shaped table (label, I1..I13, C1..C26), encoded exactly as
    `[data.criteo]` says for Criteo-format text."""
    missing: Literal["empty", "learned"] = "empty"
    """Declared fields: a null value is no entry, or the field's own learned index."""
    hash_buckets: int = Field(default=0, ge=0)
    """Declared categorical and multi-valued fields: indices for values under min_count, by
    crc32(value) % n (0: one OOV index)."""
    batch_rows: int = Field(default=1 << 16, ge=1)
    """Rows read at a time (memory is bounded by this, a row group and the vocabulary)."""
    rows_per_shard: int = Field(default=1 << 19, ge=1)
    """Rows per encoded shard on disk."""
    piece_rows: int = Field(default=1 << 20, ge=1)
    """Rows per piece (consecutive row groups of a file, at least this many where the file has
    them): the unit of work that ranks and `data.workers` share."""

    @model_validator(mode="after")
    def _label_is_no_field(self) -> ParquetOptions:
        if LABEL in (f.name for f in self.fields):
            raise ValueError(f"a field cannot be named {LABEL!r}: the name is the label's")
        return self


class DataConfig(_Section):
    format: Literal["libfm", "tabular", "synthetic", "criteo", "parquet"]
    train: str | list[str] = ""
    """Training file (libfm, criteo), the tabular schema file (tabular), or a Parquet dataset:
    a file, a directory of part files (Hive-style key=value directories too), a glob, or a
    list of these (parquet)."""
    validation: str | list[str] = ""
    """Validation file (libfm, criteo) or Parquet dataset; tabular schemas split the data
    themselves."""
    root: str = ""
    """Tabular: the folder of the schema's files, overriding the schema's `root`."""
    fields: list[str] = Field(default_factory=list)
    """libFM: a name per position in the row (default field0, field1, ...)."""
    task: Task = "regression"
    min_count: int = Field(default=1, ge=1)
    """Values seen fewer times in training map to the field's out-of-vocabulary index."""
    synthetic: dict[str, Any] = Field(default_factory=dict)
    """Generator settings for format = synthetic (see training.synthetic.SyntheticSpec)."""
    criteo: CriteoOptions = CriteoOptions()
    """Reading and encoding options for format = criteo (encoding options for a Criteo-shaped
    Parquet table too)."""
    parquet: ParquetOptions = ParquetOptions()
    """Columns and reading options for format = parquet."""
    cache_dir: str = ".cache/afm-data"
    """Where encoded shards are kept and reused while the raw files and settings are unchanged."""
    workers: int = Field(default=1, ge=1, strict=True)
    """Processes per rank that count and encode Criteo text and Parquet (each a piece at a
    time); the cache is the same whatever their number."""
    negative_keep_rate: float = Field(default=1.0, gt=0.0, le=1.0)
    """Binary tasks: keep each negative training row with this probability (chosen once, from
    the run's seed and the row's position: the same rows every epoch and on every rank); the
    exported model adds ln(rate) to its logit, so that it predicts the full traffic's rate."""
    validation_negative_keep_rate: float = Field(default=1.0, gt=0.0, le=1.0)
    """The same for the validation rows (1: evaluate on every row, at the served rate)."""

    @model_validator(mode="before")
    @classmethod
    def _click_log_min_count(cls, raw: Any) -> Any:
        """Click logs (Criteo text, Parquet tables) default to min_count = 10 (the usual
        setting for Criteo's), the other formats to 1."""
        if isinstance(raw, dict) and raw.get("format") in CLICK_LOGS and "min_count" not in raw:
            return {**raw, "min_count": 10}
        return raw

    @model_validator(mode="after")
    def _downsampling_needs_labels(self) -> DataConfig:
        rates = (self.negative_keep_rate, self.validation_negative_keep_rate)
        if self.task != "binary" and min(rates) < 1.0:
            raise ValueError(f"negative_keep_rate applies to binary tasks only, not {self.task}")
        return self


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
    embedding_l2: float = Field(default=0.0, ge=0.0)
    """L2 on the embedding vectors v_i (0.5 * lambda * ||v||^2, added to a batch's mean loss)."""
    linear_l2: float = Field(default=0.0, ge=0.0)
    """L2 on the linear weights w_i (not the global bias), the same way as `embedding_l2`."""
    l2_scope: Literal["batch", "table"] = "batch"
    """`batch`: the rows each instance uses, averaged over the batch (libFM's per-sample SGD
    term: frequent features are pulled harder); `table`: every row, once per step (DeepCTR)."""
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    """Raise every learning rate linearly from ~0 over this many epochs (counted in steps)."""
    lr_decay: Literal["none", "exponential", "cosine"] = "none"
    """After warm-up: none; exponential (x `lr_gamma` per epoch); cosine to 0 at `epochs`."""
    lr_gamma: float = Field(default=0.9, gt=0.0, le=1.0)
    """The per-epoch factor of `lr_decay = "exponential"`."""
    freeze_pretrained_epochs: int = Field(default=0, ge=0)
    """AFM from an FM: keep the FM's embeddings and linear weights fixed for this many first
    epochs, so that the new attention network and p learn against the FM they start from."""
    uniform_start: bool = False
    """Start the attention exactly uniform (h = 0, p = P), so that the AFM first scores as an
    FM: as the FM it starts from (`pretrain`, `init_from`) instead of first losing ground to a
    random attention network, or, from scratch, as an FM of its own vectors. Not applied when
    `init_from` is an AFM."""
    monitor: Literal["", "auc", "logloss", "ne", "rmse"] = ""
    """The validation metric of early stopping and the best epoch ("": auc for binary, rmse
    for regression)."""
    min_delta: float = Field(default=0.0, ge=0.0)
    """An epoch resets the patience only if it beats the best (smoothed) metric by more than this."""
    patience_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Patience counts on an exponential moving average of the metric with this weight on the
    past (0: the raw metric), so one lucky epoch does not end a run; the best raw epoch is kept."""
    pretrain: str = ""
    """Paper protocol: a config (relative to this one) of the FM to train first and start from."""
    init_from: str = ""
    """A finished run directory to start from: an FM (the paper protocol, instead of training
    `pretrain`), or yesterday's model on a newer log; known values keep their vectors."""
    eval_batch_size: int = Field(default=16384, ge=1)
    calibration: Literal["auto", "none", "platt", "isotonic"] = "auto"
    """Binary tasks: a monotone map from the score to the served probability, fitted on the
    validation rows after training and exported into the graph: none (the sigmoid), platt
    (sigmoid(a * score + b)) or isotonic (piecewise linear, at most 200 knots). auto:
    isotonic for a binary task whose validation rows are all kept, else none (on held-out
    rows it lowered logloss most and kept AUC; docs/RESULTS.md)."""
    micro_batch_size: int = Field(default=0, ge=0)
    """Rows per forward/backward pass; a larger batch is split and its gradients summed before
    one step (the same step). Bounds activation memory: an AFM pass holds several
    (rows x pairs x embedding) tensors. 0: the whole batch at once."""
    compile: bool = False
    """Run training steps under torch.compile: FM steps several times faster after a compile of
    seconds; no gain for AFM (docs/BENCHMARKS.md, training speed)."""
    shuffle_buffer: int = Field(default=1 << 20, ge=1)
    """Rows shuffled together: whole shards, in a new order each epoch, up to this many rows."""
    checkpoint_every_steps: int = Field(default=0, ge=0)
    """Write the training state every this many steps (0: off); also after every epoch."""
    checkpoint_every_minutes: float = Field(default=10.0, ge=0.0)
    """... and every this many minutes of training (0: off)."""
    sparse_tables: Literal["auto"] | bool = "auto"
    """The embedding and linear tables take sparse gradients: only the rows a step touches are
    exchanged between ranks and updated (lazy Adam: untouched rows keep their moments as they
    are). auto: on when a table has many more rows than a step looks up (docs/DISTRIBUTED.md)."""

    @model_validator(mode="after")
    def _sparse_tables_need_row_l2(self) -> TrainSection:
        if self.sparse_tables is True and self.whole_table_l2():
            raise ValueError("train.sparse_tables = true needs l2_scope = 'batch': an L2 term over "
                             "the whole table touches every row every step")
        return self

    def whole_table_l2(self) -> bool:
        """Whether an L2 term reaches every row of a table every step."""
        return self.l2_scope == "table" and (self.embedding_l2 > 0 or self.linear_l2 > 0)


class SearchRange(_Section):
    """One dimension of a `[tune.space]`: `choices`, or a range `low`..`high` (integers if both
    are), optionally on a log scale or in steps of `step`."""

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchRange:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("give either choices = [...] or both low and high")
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low must be below high, got {self.low} and {self.high}")
        if self.log and self.low is not None and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got {self.low}")
        return self


class TuneSection(_Section):
    """`[tune]`, read by `afm-tune` only: the search space and how to search it."""

    space: dict[str, SearchRange] = Field(min_length=1)
    """Dotted config key (as for --set, e.g. "train.lr") -> its range or choices."""
    metric: Literal["", "auc", "logloss", "ne", "rmse"] = ""
    """The validation metric to optimise ("": the run's early-stopping monitor)."""
    n_trials: int = Field(default=20, ge=1)
    """Finished (complete or pruned) trials the study stops at, counted across resumes."""
    timeout_minutes: float = Field(default=0.0, ge=0.0)
    """Start no new trial after this many minutes of this invocation (0: no limit)."""
    parallel: int = Field(default=1, ge=1)
    """Trials at a time: 1 with all of torch's threads, or N processes with one thread each."""
    pruner: Literal["median", "none"] = "median"
    """Stop a trial whose validation metric is worse than the median of earlier trials' at the same epoch."""
    startup_trials: int = Field(default=5, ge=0)
    """Trials that are never pruned (and that TPE samples at random before modelling)."""
    warmup_epochs: int = Field(default=2, ge=0)
    """Epochs of a trial that are never pruned."""


class ExportSection(_Section):
    table_dtype: Literal["float32", "float16"] = "float32"
    """The embedding table's type in the exported graph: float16 halves the bundle's largest
    tensor; each looked-up row is cast to float32 (docs/BENCHMARKS.md has the metric change)."""


class RunConfig(_Section):
    name: str
    version: str = "1"
    seed: int = 2017
    data: DataConfig
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    export: ExportSection = ExportSection()
    tune: TuneSection | None = Field(default=None, exclude=True)
    """`[tune]`: read by afm-tune; afm-train ignores it (and runs do not record it)."""
    source: str = ""
    """Where the config was read from (filled in by `load_config`)."""
    overrides: list[str] = Field(default_factory=list)
    """The `--set` overrides it was read with (filled in by `load_config`)."""

    @model_validator(mode="after")
    def _monitor_fits_task(self) -> RunConfig:
        for choice in (self.train.monitor, self.tune.metric if self.tune else ""):
            monitored(self.data.task, choice)
        if self.train.calibration in ("platt", "isotonic"):
            if self.data.task != "binary":
                raise ValueError(f"train.calibration applies to binary tasks only, not {self.data.task}")
            if self.data.validation_negative_keep_rate < 1.0:
                raise ValueError("train.calibration is fitted on the validation rows: keep all of "
                                 "them (data.validation_negative_keep_rate = 1)")
        return self

    def calibration(self) -> Literal["none", "platt", "isotonic"]:
        """The map `train.calibration` asks for, with "auto" decided."""
        if self.train.calibration != "auto":
            return self.train.calibration
        full_rate = self.data.validation_negative_keep_rate == 1.0
        return "isotonic" if self.data.task == "binary" and full_rate else "none"

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed: the config, wherever it was read from."""
        # export and data.workers are training-neutral
        return self.model_dump(exclude={"source": True, "overrides": True, "export": True,
                                        "data": {"workers"}})

    def pretrain_overrides(self) -> list[str]:
        """The overrides that reach the FM this AFM is pretrained from: `pretrain.KEY=VALUE`,
        and the plain ones that shape the whole run (data, embedding size, seed, epochs, ...)."""
        chosen = []
        for override in self.overrides:
            key = override.partition("=")[0].strip()
            if key.startswith(PRETRAIN_PREFIX):
                chosen.append(override.strip()[len(PRETRAIN_PREFIX):])
            elif key.startswith(SHARED_WITH_PRETRAIN):
                chosen.append(override)
        return chosen


PRETRAIN_PREFIX = "pretrain."
SHARED_WITH_PRETRAIN = (
    "data.", "seed", "model.embed_dim", "train.epochs", "train.patience", "train.batch_size",
    "train.eval_batch_size", "train.shuffle_buffer", "train.checkpoint_",
)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """`overrides` are `key=value`; `pretrain.key=value` ones only reach the pretraining FM."""
    path = Path(path)
    with path.open("rb") as f:
        raw = tomllib.load(f)
    for override in overrides or []:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise ValueError(f"override must look like key=value, got {override!r}")
        if not key.strip().startswith(PRETRAIN_PREFIX):
            apply_override(raw, key, value)
    raw["source"] = str(path)
    raw["overrides"] = list(overrides or [])
    return RunConfig.model_validate(raw)


def apply_override(tree: dict[str, Any], key: str, value: str) -> None:
    """Set the dotted `key` of a raw config tree to `value` read as `--set` reads it."""
    _set(tree, key.strip().split("."), _parse_value(value.strip()))


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
