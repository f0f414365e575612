"""Parquet datasets: layouts (file, directory, Hive partitions, glob, list), Arrow types as
Spark and pyarrow write them, parity of the streamed encoding with the service's encoder,
the Criteo-shaped table against the same log as text, and bad input through the CLIs."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.features import FieldKind
from tests.training.test_cli import one_line_error
from training import formats
from training.cli import data_format, eval_main, train_main
from training.config import DataConfig
from training.criteo import synth
from training.data import Prepared
from training.parquet.files import looks_like_parquet, resolve
from training.parquet.source import Column, ParquetSource

DAYS = ["2026-12-01", "2026-12-02", "2026-12-03"]
FIELDS: list[dict[str, Any]] = [
    {"name": "user", "kind": "categorical", "missing": ["unknown"]},
    {"name": "item", "column": "item_id", "kind": "categorical"},
    {"name": "tags", "kind": "multi", "pooling": "sum"},
    {"name": "topics", "kind": "multi", "separator": ","},
    {"name": "price", "kind": "numeric"},
    {"name": "age", "kind": "bucketized", "boundaries": [18, 35, 56]},
    {"name": "day", "kind": "categorical"},
]


def clicks(rows: int, seed: int) -> pa.Table:
    """A click table typed as Spark and pyarrow write them: a boolean label, dictionary
    strings, int64 ids, lists, separated strings, float32 with NaN, int32 with nulls."""
    rng = np.random.default_rng(seed)
    users = [None, "", "unknown", *(f"u{k}" for k in range(12))]
    user = [users[k] for k in rng.integers(0, len(users), rows)]
    item = [None if k == 0 else int(k) for k in rng.integers(0, 30, rows)]
    letters = list("abcdef")
    tags = [None if r < 0.1 else [letters[k] for k in rng.integers(0, 6, int(r * 4))]
            + ([""] if r > 0.9 else []) for r in rng.random(rows)]
    topics = [None if r < 0.1 else ",".join(letters[k] for k in rng.integers(0, 6, int(r * 3)))
              for r in rng.random(rows)]
    price = rng.gamma(2.0, 10.0, rows).astype(np.float32)
    price[rng.random(rows) < 0.1] = np.nan
    age = rng.integers(10, 70, rows)
    score = np.array([(u or "").endswith(("1", "2")) for u in user]) + (age > 35) + rng.random(rows)
    return pa.table({
        "clicked": pa.array(score > 1.2),
        "user": pa.array(user, pa.string()).dictionary_encode(),
        "item_id": pa.array(item, pa.int64()),
        "tags": pa.array(tags, pa.list_(pa.string())),
        "topics": pa.array(topics, pa.string()),
        "price": pa.array(price, mask=rng.random(rows) < 0.05),
        "age": pa.array(age.astype(np.int32), mask=rng.random(rows) < 0.1),
        "unused": pa.array(rng.random(rows)),
    })


def write_days(root: Path, table: pa.Table, days: list[str] = DAYS) -> Path:
    """The table split over Hive-style day partitions (two files in the first day), beside
    the hidden files Spark leaves."""
    cuts = np.linspace(0, table.num_rows, len(days) + 1).astype(int)
    for k, day in enumerate(days):
        part = table.slice(cuts[k], cuts[k + 1] - cuts[k])
        directory = root / f"day={day}"
        directory.mkdir(parents=True)
        if k == 0:
            half = part.num_rows // 2
            pq.write_table(part.slice(0, half), directory / "part-00000.parquet", row_group_size=50)
            pq.write_table(part.slice(half), directory / "part-00001.parquet")
        else:
            pq.write_table(part, directory / "part-00000.parquet", row_group_size=70)
        (directory / ".part-00000.parquet.crc").write_bytes(b"not parquet")
    (root / "_SUCCESS").write_text("")
    return root


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parquet")
    return {"train": write_days(root / "train", clicks(600, 0)),
            "validation": write_days(root / "validation", clicks(200, 1), ["2026-12-04"])}


def declared(logs: dict[str, Path], cache: Path, **parquet: Any) -> DataConfig:
    return DataConfig.model_validate({
        "format": "parquet", "train": str(logs["train"]), "validation": str(logs["validation"]),
        "task": "binary", "min_count": 2, "cache_dir": str(cache),
        "parquet": {"label": "clicked", "fields": FIELDS, "batch_rows": 64, "rows_per_shard": 128,
                    **parquet}})


def prepare(data: DataConfig) -> Prepared:
    return formats.preparer("parquet")(data, Path(data.cache_dir), None)


def instances(root: Path) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The dataset's rows as a client would send them to the service."""
    rows, labels = [], []
    for file in sorted(root.glob("day=*/part-*.parquet")):
        day = file.parent.name.split("=", 1)[1]
        for r in pq.read_table(file).to_pylist():
            labels.append(float(r["clicked"]))
            price = r["price"]
            rows.append({
                "user": None if r["user"] in (None, "", "unknown") else r["user"],
                "item": None if r["item_id"] is None else r["item_id"],
                "tags": None if r["tags"] is None else [t for t in r["tags"] if t],
                "topics": [t for t in r["topics"].split(",") if t] if r["topics"] else None,
                "price": None if price is None or np.isnan(price) else price,
                "age": r["age"], "day": day})
    return rows, np.array(labels, np.float32)


@pytest.mark.parametrize("options", [{}, {"missing": "learned", "hash_buckets": 3}])
def test_declared_fields_encode_as_the_service_does(logs: dict[str, Path], tmp_path: Path,
                                                    options: dict[str, Any]) -> None:
    prepared = prepare(declared(logs, tmp_path / "cache", **options))
    space = prepared.space
    assert space.field_names == [f["name"] for f in FIELDS]
    assert [f.kind for f in space.fields] == [FieldKind(f["kind"]) for f in FIELDS]
    assert space.fields[6].vocabulary == sorted(DAYS)  # the partition values, 200 rows each
    assert space.fields[2].max_entries == 3 and space.fields[2].pooling == "sum"
    for name, root, shards in (("train", logs["train"], prepared.train),
                               ("validation", logs["validation"], prepared.validation)):
        raw, labels = instances(root)
        served = space.encode(raw)
        data = shards.read(0, len(shards))
        assert len(shards) == len(raw) == prepared.fingerprints[name].rows
        assert np.array_equal(data.indices, served.indices), name
        assert np.array_equal(data.weights, served.weights), name
        assert np.array_equal(data.labels, labels)
        assert shards.oov == len(served.oov)
    assert not prepared.train.implicit_weights  # mean pooling and a numeric field


def test_numeric_fields_are_standardised_on_the_training_rows(logs: dict[str, Path], tmp_path: Path) -> None:
    price = prepare(declared(logs, tmp_path / "cache")).space.fields[4]
    values = np.array([r["price"] for r in instances(logs["train"])[0] if r["price"] is not None])
    assert price.center == pytest.approx(values.mean()) and price.scale == pytest.approx(values.std())


def test_the_cache_is_reused_until_a_file_changes(logs: dict[str, Path], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    local = {name: Path(shutil.copytree(path, tmp_path / name)) for name, path in logs.items()}
    first = prepare(declared(local, tmp_path / "cache"))
    caplog.clear()
    again = prepare(declared(local, tmp_path / "cache"))
    assert again.train.directory == first.train.directory
    assert not [r for r in caplog.records if "rows in" in r.getMessage()]
    extra = local["validation"] / "day=2026-12-05" / "part-00000.parquet"
    extra.parent.mkdir()
    pq.write_table(clicks(10, 5), extra)
    grown = prepare(declared(local, tmp_path / "cache"))
    assert grown.train.directory == first.train.directory
    assert len(grown.validation) == len(first.validation) + 10
    assert grown.fingerprints["validation"].sha256 != first.fingerprints["validation"].sha256


def layout(root: Path, kind: str) -> str | list[str]:
    """The same 600 rows (or, for glob and list, the days they name) in one of the layouts."""
    table = clicks(600, 0)
    if kind == "file":
        root.mkdir()
        pq.write_table(table, root / "all.parquet", row_group_size=100)
        return str(root / "all.parquet")
    if kind == "directory":
        root.mkdir()
        for k in range(3):
            pq.write_table(table.slice(200 * k, 200), root / f"part-{k:05d}-c000.snappy.parquet")
        (root / "_SUCCESS").write_text("")
        return str(root)
    for k, day in enumerate(DAYS):  # nested Hive partitions: day, then hour
        for h in range(2):
            directory = root / f"day={day}" / f"hour={h:02d}"
            directory.mkdir(parents=True)
            pq.write_table(table.slice(200 * k + 100 * h, 100), directory / "part-00000.parquet")
    (root / "_temporary").mkdir()
    (root / "_temporary" / "part-9.parquet").write_bytes(b"half-written")
    if kind == "glob":
        return str(root / "day=2026-12-0[12]")
    if kind == "list":
        return [str(root / "day=2026-12-02"), str(root / "day=2026-12-01" / "hour=01" / "part-00000.parquet")]
    return "file://" + str(root) if kind == "url" else str(root)


@pytest.mark.parametrize(("kind", "rows"), [("file", range(600)), ("directory", range(600)),
                                            ("hive", range(600)), ("url", range(600)),
                                            ("glob", range(400)), ("list", range(100, 400))])
def test_every_layout_reads_its_rows_in_name_order(tmp_path: Path, kind: str, rows: range) -> None:
    paths = layout(tmp_path / "logs", kind)
    columns = [Column("item", "item_id", "categorical"), Column("price", "price", "number")]
    source = ParquetSource(paths, columns, "clicked", batch_rows=64)
    read = pa.Table.from_batches(list(source.batches()))
    expected = clicks(600, 0).take(list(rows))
    assert read.column("item").to_pylist() == expected.column("item_id").cast(pa.string()).to_pylist()
    assert read.column("label").to_pylist() == expected.column("clicked").cast(pa.float32()).to_pylist()
    assert source.rows == len(rows)
    assert all(not Path(f.path).name.startswith(("_", ".")) for f in source.files)


def test_hive_partitions_are_columns_only_when_named(tmp_path: Path) -> None:
    paths = layout(tmp_path / "logs", "hive")
    hour = ParquetSource(paths, [Column("hour", "hour", "number"), Column("day", "day", "categorical")],
                         "clicked", 1000)
    read = pa.Table.from_batches(list(hour.batches()))
    assert read.column("hour").to_pylist() == ([0.0] * 100 + [1.0] * 100) * 3
    assert read.column("day").to_pylist()[::100] == [d for d in DAYS for _ in range(2)]
    files = resolve(paths)
    assert files[0].partitions() == {"day": "2026-12-01", "hour": "00"}


@pytest.mark.parametrize("kind", ["string", "large_string", "dictionary", "int32", "int64", "null"])
def test_categorical_columns_take_strings_and_integers(tmp_path: Path, kind: str) -> None:
    values: list[Any] = [3, None, 12, 3]
    types = {"string": pa.string(), "large_string": pa.large_string(), "int32": pa.int32(),
             "int64": pa.int64(), "dictionary": pa.dictionary(pa.int32(), pa.string()), "null": pa.null()}
    if kind in ("string", "large_string", "dictionary"):
        values = ["3", "", "12", "3"]
    if kind == "null":
        values = [None] * 4
    array = pa.array(values, types[kind]) if kind != "dictionary" else pa.array(values).dictionary_encode()
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": pa.array([1, 0, 1, 0], pa.int8()), "c": array}), path)
    read = next(ParquetSource(str(path), [Column("c", "c", "categorical")], "label", 10).batches())
    expected = [None] * 4 if kind == "null" else ["3", None, "12", "3"]
    assert read.column("c").to_pylist() == expected and read.column("label").type == pa.float32()


@pytest.mark.parametrize(("array", "expected"), [
    (pa.array([1, None, 3], pa.int32()), [1.0, None, 3.0]),
    (pa.array([1.5, float("nan"), None], pa.float32()), [1.5, None, None]),
    (pa.array([2.0, None, 0.25], pa.float64()), [2.0, None, 0.25]),
    (pa.array([True, False, None]), [1.0, 0.0, None]),
])
def test_numeric_columns_take_integers_floats_and_nulls(tmp_path: Path, array: pa.Array,
                                                        expected: list[Any]) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": [1.0, 0.0, 1.0], "x": array}), path)
    read = next(ParquetSource(str(path), [Column("x", "x", "number")], "label", 10).batches())
    assert read.column("x").to_pylist() == expected


@pytest.mark.parametrize("array", [
    pa.array([["a", "b"], None, [], ["", "c"]], pa.list_(pa.string())),
    pa.array([["a", "b"], None, [], ["", "c"]], pa.large_list(pa.large_string())),
    pa.array(["a|b", None, "", "|c"], pa.string()),
])
def test_multi_valued_columns_take_lists_or_separated_strings(tmp_path: Path, array: pa.Array) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"label": [1, 0, 1, 0], "tags": array}), path)
    read = next(ParquetSource(str(path), [Column("tags", "tags", "multi", "|")], "label", 10).batches())
    assert read.column("tags").to_pylist() == [["a", "b"], None, [], ["c"]]


def test_afm_eval_guesses_parquet_from_files_and_directories(logs: dict[str, Path], tmp_path: Path) -> None:
    one = next(logs["train"].glob("day=*/part-00000.parquet"))
    for path in (str(one), str(logs["train"]), str(logs["train"] / "day=2026-12-0*"), "s3://b/x.parquet"):
        assert looks_like_parquet(path) and data_format(path, None) == "parquet", path
    (tmp_path / "rows.libfm").write_text("1 1:1 2:1\n")
    assert data_format(str(tmp_path), None) == "libfm" and data_format([str(one)], None) == "parquet"
    assert not looks_like_parquet(str(tmp_path / "nowhere"))


def criteo_logs(root: Path) -> dict[str, Path]:
    """One generated log written both ways: text files and Parquet day partitions."""
    world = synth.World(scale=0.001)
    paths = {"train.tsv": root / "train.tsv", "validation.tsv": root / "valid.tsv",
             "train": root / "train", "validation": root / "valid"}
    for split, rows, seed, days in (("train", 3000, 0, 3), ("validation", 800, 1, 1)):
        synth.write(paths[f"{split}.tsv"], rows, world, seed, chunk_rows=700)
        synth.write_parquet(paths[split], rows, world, seed, days=days, chunk_rows=700)
    return paths


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return criteo_logs(tmp_path_factory.mktemp("criteo-both"))


def criteo_config(paths: dict[str, Path], fmt: str, cache: Path, **criteo: Any) -> DataConfig:
    suffix = ".tsv" if fmt == "criteo" else ""
    return DataConfig.model_validate({
        "format": fmt, "train": str(paths["train" + suffix]), "validation": str(paths["validation" + suffix]),
        "task": "binary", "cache_dir": str(cache), "min_count": 3,
        "criteo": {"rows_per_shard": 500, **criteo}, "parquet": {"rows_per_shard": 500, "batch_rows": 333}})


@pytest.mark.parametrize("options", [{}, {"hash_buckets": 5, "missing": "empty"}])
def test_a_criteo_shaped_table_trains_exactly_as_the_same_log_in_text(
        both: dict[str, Path], tmp_path: Path, options: dict[str, Any]) -> None:
    text = formats.preparer("criteo")(criteo_config(both, "criteo", tmp_path, **options), tmp_path, None)
    table = formats.preparer("parquet")(criteo_config(both, "parquet", tmp_path, **options), tmp_path, None)
    assert [f.model_dump() for f in table.space.fields] == [f.model_dump() for f in text.space.fields]
    for split in ("train", "validation"):
        a, b = getattr(text, split), getattr(table, split)
        assert a.directory != b.directory and a.sizes == b.sizes and a.oov == b.oov
        for k in range(len(a.sizes)):
            left, right = a.shard(k), b.shard(k)
            assert np.array_equal(left.indices, right.indices) and np.array_equal(left.labels, right.labels)
            assert left.weights is None and right.weights is None  # implicit: all categorical
        assert table.fingerprints[split].rows == text.fingerprints[split].rows


def test_criteo_columns_as_floats_and_dictionaries_read_as_the_integers_and_strings(
        both: dict[str, Path], tmp_path: Path) -> None:
    """Spark writes Criteo's integers as doubles where a job read them as text; a categorical
    column may be dictionary-encoded. Neither changes the feature space or a shard."""
    retyped = dict(both, train=tmp_path / "train")
    for part in sorted(both["train"].glob("day=*/part-00000.parquet")):
        table = pq.read_table(part, partitioning=None)
        columns = [c.cast(pa.float64()) if name.startswith("I") else
                   c.dictionary_encode() if name.startswith("C") else c
                   for name, c in zip(table.column_names, table.columns, strict=True)]
        target = tmp_path / "train" / part.parent.name / part.name
        target.parent.mkdir(parents=True)
        pq.write_table(pa.table(columns, names=table.column_names), target)
    original = formats.preparer("parquet")(criteo_config(both, "parquet", tmp_path), tmp_path, None)
    floats = formats.preparer("parquet")(criteo_config(retyped, "parquet", tmp_path), tmp_path, None)
    assert floats.space.fields == original.space.fields
    assert floats.train.directory != original.train.directory
    assert np.array_equal(floats.train.read(0, 3000).indices, original.train.read(0, 3000).indices)


def test_criteo_integers_as_numeric_fields_agree_with_the_text_log(both: dict[str, Path],
                                                                   tmp_path: Path) -> None:
    """Numeric integers are standardised by moments merged block by block: the blocks of text
    and of Parquet differ, so center and scale agree to rounding, not to the bit."""
    text, table = (formats.preparer(fmt)(criteo_config(both, fmt, tmp_path, integers="numeric"),
                                         tmp_path, None) for fmt in ("criteo", "parquet"))
    for a, b in zip(text.space.fields[:13], table.space.fields[:13], strict=True):
        assert a.center == pytest.approx(b.center, rel=1e-12) and a.scale == pytest.approx(b.scale, rel=1e-12)
    left, right = text.validation.read(0, 800), table.validation.read(0, 800)
    assert np.array_equal(left.indices, right.indices)
    assert np.allclose(left.weights, right.weights, rtol=1e-6)


def test_the_generator_writes_the_same_rows_as_day_partitions(both: dict[str, Path]) -> None:
    days = sorted(p.name for p in both["train"].iterdir())
    assert days == ["day=2026-12-01", "day=2026-12-02", "day=2026-12-03"]
    table = pq.read_table(both["train"], partitioning=None)  # the day is no column of the files
    assert table.schema == synth.SPARK_SCHEMA
    assert [pq.read_metadata(both["train"] / d / "part-00000.parquet").num_rows for d in days] == [1000] * 3
    labels = np.loadtxt(both["train.tsv"], delimiter="\t", usecols=0)
    assert np.array_equal(table.column("label").to_numpy(), labels)
    assert np.array_equal(np.load(f"{both['train']}.probs.npy"), np.load(f"{both['train.tsv']}.probs.npy"))
    truth = json.loads(Path(f"{both['train']}.truth.json").read_text())
    assert truth["days"] == 3 and truth["bayes_auc"] == json.loads(
        Path(f"{both['train.tsv']}.truth.json").read_text())["bayes_auc"]


def toml_table(values: dict[str, Any]) -> str:
    """An inline TOML table (JSON's strings, numbers and lists are TOML's)."""
    return "{" + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items()) + "}"


def config_file(tmp_path: Path, train: str, validation: str, fields: list[dict[str, Any]] = FIELDS) -> str:
    config = tmp_path / "clicks.toml"
    config.write_text(f"""
name = "clicks"
[data]
format = "parquet"
task = "binary"
train = {json.dumps(train)}
validation = {json.dumps(validation)}
cache_dir = {json.dumps(str(tmp_path / "cache"))}
[data.parquet]
label = "clicked"
fields = [{", ".join(toml_table(f) for f in fields)}]
[model]
embed_dim = 4
[train]
epochs = 1
""")
    return str(config)


def broken(tmp_path: Path, logs: dict[str, Path], case: str) -> tuple[str, str]:
    """(a training dataset with one thing wrong, what the error line must say)."""
    root = Path(shutil.copytree(logs["train"], tmp_path / "bad"))
    part = root / "day=2026-12-02" / "part-00000.parquet"
    table = pq.read_table(part, partitioning=None)
    if case == "missing column":
        pq.write_table(table.drop_columns(["price"]), part)
        return str(root), f"{part}: no column 'price' (field 'price'); it has clicked, user"
    if case == "list for a number":
        pq.write_table(table.set_column(5, "price", table.column("tags")), part)
        return str(root), f"{part}: column 'price' is list<element: string>; field 'price' takes numbers"
    if case == "string for a number":
        pq.write_table(table.set_column(5, "price", table.column("topics")), part)
        return str(root), f"{part}: column 'price' is string; field 'price' takes numbers"
    if case == "float for a category":
        pq.write_table(table.set_column(2, "item_id", table.column("price")), part)
        return str(root), f"{part}: column 'item_id' is float; field 'item' takes strings or integers"
    if case == "corrupt":
        part.write_bytes(b"PAR1" + b"\x00" * 100)
        return str(root), f"{part}: cannot read it as Parquet"
    if case == "truncated":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
        return str(root), f"{part}: cannot read it as Parquet"
    if case == "label with nulls":
        clicked = pa.array([None] + table.column("clicked").to_pylist()[1:], pa.bool_())
        pq.write_table(table.set_column(0, "clicked", clicked), part)
        return str(root), f"{part}: column 'clicked' (the label) has nulls"
    if case == "no rows":
        shutil.rmtree(root)
        (root / "day=2026-12-01").mkdir(parents=True)
        pq.write_table(table.slice(0, 0), root / "day=2026-12-01" / "part-00000.parquet")
        return str(root), f"{root}: no rows in 1 Parquet file(s)"
    if case == "no files":
        shutil.rmtree(root)
        (root / "day=2026-12-01").mkdir(parents=True)
        (root / "_SUCCESS").write_text("")
        return str(root), f"no Parquet files under {root}"
    if case == "glob matching nothing":
        return str(root / "day=2025-*"), f"no Parquet files match {root / 'day=2025-*'}"
    assert case == "no such path"
    return str(tmp_path / "nowhere"), f"cannot read {tmp_path / 'nowhere'}: No such file or directory"


BAD = ["missing column", "list for a number", "string for a number", "float for a category", "corrupt",
       "truncated", "label with nulls", "no rows", "no files", "glob matching nothing", "no such path"]


@pytest.mark.parametrize("case", BAD)
def test_afm_train_refuses_bad_parquet_in_one_line(logs: dict[str, Path], tmp_path: Path, case: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    train, expected = broken(tmp_path, logs, case)
    config = config_file(tmp_path, train, str(logs["validation"]))
    line = one_line_error(train_main, ["--config", config, "--out", str(tmp_path / "run"),
                                       "--prepare-only"], capsys)
    assert line.startswith(f"afm-train: {expected}"), line


@pytest.fixture(scope="module")
def bundle(logs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parquet-bundle")
    config = config_file(root, str(logs["train"]), str(logs["validation"]))
    assert train_main(["--config", config, "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.mark.slow
def test_afm_eval_reads_the_columns_the_model_was_trained_on(bundle: Path, logs: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert eval_main(["--model", str(bundle), "--data", str(logs["validation"])]) == 0
    result = json.loads(capsys.readouterr().out)
    metrics = json.loads((bundle / "manifest.json").read_text())["metrics"]
    assert result["rows"] == 200 and result["auc"] == pytest.approx(metrics["auc"], abs=1e-6)
    days = [str(p) for p in sorted(logs["train"].glob("day=*"))]
    assert eval_main(["--model", str(bundle), "--data", *days[:2], "--format", "parquet"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 400


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing column", "corrupt", "no rows", "no such path"])
def test_afm_eval_refuses_bad_parquet_in_one_line(bundle: Path, logs: dict[str, Path], tmp_path: Path,
                                                  case: str, capsys: pytest.CaptureFixture[str]) -> None:
    data, expected = broken(tmp_path, logs, case)
    line = one_line_error(eval_main, ["--model", str(bundle), "--data", data, "--format", "parquet"], capsys)
    assert line.startswith(f"afm-eval: {expected}"), line


def test_field_named_label_is_refused() -> None:
    with pytest.raises(ValueError, match="a field cannot be named 'label'"):
        DataConfig.model_validate({"format": "parquet", "parquet": {
            "fields": [{"name": "label", "kind": "categorical"}, {"name": "b", "kind": "categorical"}]}})


def test_a_list_of_paths_is_for_parquet_only(tmp_path: Path) -> None:
    data = DataConfig.model_validate({"format": "libfm", "train": ["a", "b"], "validation": "c"})
    with pytest.raises(ValueError, match="data.train takes one file in this format, got a list of 2"):
        formats.preparer("libfm")(data, tmp_path, None)


@pytest.mark.parametrize(("page", "heading"), [("README.md", "## Your own click table"),
                                               ("docs/TRAINING.md", "## Parquet tables")])
def test_the_documented_click_table_config_is_valid(page: str, heading: str) -> None:
    from tests.helpers import REPO
    from training.config import RunConfig

    text = (REPO / page).read_text()
    section = text[text.index(heading):]
    start = section.index("```toml\n") + len("```toml\n")
    example = tomllib.loads(section[start : section.index("```", start)])
    data = {"format": "parquet", **example.get("data", {})}
    parsed = RunConfig.model_validate({"name": "clicks", "data": data}).data
    assert parsed.parquet.label == "clicked" and parsed.min_count == 10
    assert FieldKind.MULTI in [f.kind for f in parsed.parquet.fields]
