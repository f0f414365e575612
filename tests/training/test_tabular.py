"""The tabular reader on small generated files, and on MovieLens 100K when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from model.features import FeatureSpace, FieldKind
from training import tabular
from training.cli import eval_main
from training.config import DataConfig, load_config
from training.data import Dataset, Splits

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ML100K = SHARED_DATA / "ml-100k"

# Ten ratings in time order: the last three (ts 8-10) are the validation split. Those
# bring an unseen user (u9, whose gender X is also unseen), an unseen tag z, and an item
# (i4) missing from items.tsv, so its genres stay empty.
INTER = """user:token\titem:token\trating:float\tts:float\tprice:float\ttags:token_seq
u1\ti1\t5\t1\t10\ta b
u1\ti2\t3\t2\t20\ta
u2\ti1\t4\t3\t30\tb c
u2\ti3\t2\t4\t40\t
u3\ti2\t1\t5\t50\tc
u3\ti3\t4\t6\t\ta b c
u1\ti3\t3\t7\t70\tb
u9\ti1\t2\t8\t100\tz
u2\ti4\t5\t9\t90\ta
u3\ti2\t3\t10\t0\ta
"""
USERS = "user:token\tage:float\tgender:token\nu1\t15\tF\nu2\t30\tM\nu3\t60\tF\nu9\t40\tX\n"
ITEMS = "item:token\tgenres:token_seq\ni1\tDrama|Comedy\ni2\tDrama\ni3\t?\n"
TRAIN_PRICES = [10.0, 20.0, 30.0, 40.0, 50.0, 70.0]  # row 6's price is empty

SCHEMA = """
main = "inter.tsv"
joins = [{ file = "users.tsv", on = "user" }, { file = "items.tsv", on = "item" }]
target = "rating"

[split]
method = "time"
column = "ts"
fraction = 0.3

[[fields]]
name = "user"
kind = "categorical"

[[fields]]
name = "item"
kind = "categorical"

[[fields]]
name = "gender"
kind = "categorical"

[[fields]]
name = "age"
kind = "bucketized"
boundaries = [18, 35, 56]

[[fields]]
name = "price"
kind = "numeric"
normalization = "NORMALIZATION"

[[fields]]
name = "tags"
kind = "multi"
pooling = "sum"

[[fields]]
name = "genres"
kind = "multi"
separator = "|"
pooling = "mean"
missing = ["?"]
"""


def write_files(folder: Path, schema: str = SCHEMA, normalization: str = "standard") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("inter.tsv", INTER), ("users.tsv", USERS), ("items.tsv", ITEMS)):
        (folder / name).write_text(text)
    path = folder / "schema.toml"
    path.write_text(schema.replace("NORMALIZATION", normalization))
    return path


def load(schema_path: Path, root: str = "", min_count: int = 1) -> tuple[FeatureSpace, Splits]:
    return tabular.load(
        DataConfig(format="tabular", train=str(schema_path), root=root, min_count=min_count)
    )


def field_values(space: FeatureSpace, data: Dataset, name: str) -> list[str | list[str]]:
    f = space.field_names.index(name)
    return [space.describe(f, data.indices[r, f], data.weights[r, f]) for r in range(len(data))]


def test_time_split_and_joins(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path))
    assert (len(splits.train), len(splits.validation)) == (7, 3)
    np.testing.assert_array_equal(splits.train.labels, [5, 3, 4, 2, 1, 4, 3])
    np.testing.assert_array_equal(splits.validation.labels, [2, 5, 3])
    assert field_values(space, splits.train, "gender") == ["F", "F", "M", "M", "F", "F", "F"]
    assert field_values(space, splits.train, "genres")[:2] == [["Drama", "Comedy"], ["Drama"]]
    assert splits.train.indices.shape == (7, 7, 3)  # L: the most tags in a cell
    assert set(splits.fingerprints) == {"schema", "inter.tsv", "users.tsv", "items.tsv"}
    assert splits.fingerprints["users.tsv"].rows == 4


def test_vocabulary_from_train_only_and_validation_oov_counted(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path))
    vocab = {spec.name: spec.vocabulary for spec in space.fields}
    assert sorted(vocab["user"]) == ["u1", "u2", "u3"]
    assert sorted(vocab["item"]) == ["i1", "i2", "i3"]
    assert sorted(vocab["tags"]) == ["a", "b", "c"]
    assert sorted(vocab["gender"]) == ["F", "M"]
    assert splits.train.oov == 0
    assert splits.validation.oov == 4  # user u9, its gender X, tag z, item i4
    user = space.field_names.index("user")
    assert splits.validation.indices[0, user, 0] == space.oov_index(user)
    assert field_values(space, splits.validation, "user") == ["<oov>", "u2", "u3"]


def test_min_count_sends_rare_training_values_to_oov(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path), min_count=3)
    assert space.fields[space.field_names.index("user")].vocabulary == ["u1"]
    assert splits.train.oov > 0


def test_multi_valued_fields_pool_by_mean_or_sum(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path))
    tags, genres = space.field_names.index("tags"), space.field_names.index("genres")
    assert space.fields[tags].pooling == "sum" and space.fields[genres].pooling == "mean"
    np.testing.assert_allclose(splits.train.weights[0, tags], [1.0, 1.0, 0.0])  # "a b"
    np.testing.assert_allclose(splits.train.weights[5, tags], [1.0, 1.0, 1.0])  # "a b c"
    np.testing.assert_allclose(splits.train.weights[0, genres], [0.5, 0.5, 0.0])  # 2 genres
    np.testing.assert_allclose(splits.train.weights[1, genres], [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("normalization", "center", "scale"),
    [
        ("standard", float(np.mean(TRAIN_PRICES)), float(np.std(TRAIN_PRICES))),
        ("minmax", 10.0, 60.0),
        ("none", 0.0, 1.0),
    ],
)
def test_numeric_normalisation_fitted_on_train_only(
    tmp_path: Path, normalization: str, center: float, scale: float
) -> None:
    space, splits = load(write_files(tmp_path, normalization=normalization))
    price = space.field_names.index("price")
    spec = space.fields[price]
    assert spec.kind == FieldKind.NUMERIC
    assert spec.center == pytest.approx(center) and spec.scale == pytest.approx(scale)
    assert splits.train.indices[0, price, 0] == space.offsets[price]
    assert splits.train.weights[0, price, 0] == pytest.approx((10.0 - center) / scale)
    assert splits.validation.weights[0, price, 0] == pytest.approx((100.0 - center) / scale)


def test_bucketized_field(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path))
    assert field_values(space, splits.train, "age")[:3] == ["[-inf,18)", "[-inf,18)", "[18,35)"]
    assert field_values(space, splits.validation, "age") == ["[35,56)", "[18,35)", "[56,inf)"]
    assert splits.validation.oov == 4  # a value in no training row still has its bucket


def test_missing_values_leave_the_field_empty(tmp_path: Path) -> None:
    space, splits = load(write_files(tmp_path))
    names = space.field_names
    assert not splits.train.weights[3, names.index("tags")].any()  # empty cell
    assert not splits.train.weights[5, names.index("price")].any()  # empty number
    assert not splits.train.weights[3, names.index("genres")].any()  # "?" listed as missing
    assert not splits.validation.weights[1, names.index("genres")].any()  # no join partner


def test_random_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    random_split = SCHEMA.replace('method = "time"\ncolumn = "ts"', 'method = "random"\nseed = 3')
    schema = write_files(tmp_path, random_split)
    _, first = load(schema)
    _, second = load(schema)
    np.testing.assert_array_equal(first.validation.indices, second.validation.indices)
    rows = tabular.split_rows(tabular.read_schema(schema).split, tabular.read_table(
        tabular.read_schema(schema), schema).frame)
    assert sorted([*rows[0].tolist(), *rows[1].tolist()]) == list(range(10))
    assert len(rows[1]) == 3


def test_root_override(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere"
    write_files(data)
    schema = tmp_path / "schemas" / "s.toml"
    schema.parent.mkdir()
    schema.write_text('root = "nowhere"\n' + SCHEMA.replace("NORMALIZATION", "none"))
    with pytest.raises(FileNotFoundError):
        load(schema)
    _, splits = load(schema, root=str(data))
    assert len(splits.train) == 7


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('name = "user"\n', 'name = "user"\nseparator = ","\n'), "does not apply"),
        (('kind = "bucketized"\nboundaries = [18, 35, 56]', 'kind = "bucketized"'), "boundaries"),
        (('target = "rating"', 'target = "rating"\ncolour = "red"'), "colour"),
        (('column = "ts"\n', ""), "split.column"),
    ],
)
def test_schema_is_validated(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    schema = write_files(tmp_path, SCHEMA.replace(*edit))
    with pytest.raises(ValidationError, match=message):
        load(schema)


def test_bad_tables_fail_naming_the_problem(tmp_path: Path) -> None:
    schema = write_files(tmp_path)
    (tmp_path / "users.tsv").write_text(USERS + "u1\t20\tM\n")
    with pytest.raises(ValueError, match="not unique"):
        load(schema)
    (tmp_path / "users.tsv").write_text(USERS.replace("\t15\t", "\tfifteen\t"))
    with pytest.raises(ValueError, match="'fifteen' is not a number"):
        load(schema)
    (tmp_path / "users.tsv").write_text(USERS.replace("gender:token", "price:float"))
    with pytest.raises(ValueError, match=r"\['price'\] of users.tsv are already"):
        load(schema)


def test_eval_cli_scores_a_tabular_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.run import run

    schema = write_files(tmp_path / "data", normalization="minmax")
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "tiny"\n[data]\nformat = "tabular"\ntrain = "{schema}"\n'
        '[model]\nkind = "fm"\nembed_dim = 2\n[train]\nepochs = 2\nbatch_size = 4\n'
    )
    manifest = run(load_config(config), tmp_path / "bundle")
    assert eval_main(["--model", str(tmp_path / "bundle"), "--data", str(schema),
                      "--format", "tabular"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rows"] == 3 and result["oov"] == 4
    assert result["rmse"] == pytest.approx(manifest.metrics["rmse"], abs=1e-5)
    everything = schema.read_text().replace('method = "time"\ncolumn = "ts"', 'method = "none"')
    schema.write_text(everything)
    assert eval_main(["--model", str(tmp_path / "bundle"), "--data", str(schema),
                      "--format", "tabular"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == 10


needs_ml100k = pytest.mark.skipif(
    not (ML100K / "ml-100k.inter").is_file(),
    reason=f"MovieLens 100K not found at {ML100K} (licensed, never in the repo; CI has it)",
)


@pytest.mark.slow
@needs_ml100k
def test_ml100k_schema_reads_the_real_files() -> None:
    schema = REPO / "configs" / "schemas" / "ml100k.toml"
    space, splits = load(schema, root=str(ML100K))
    assert space.field_names == [
        "user_id", "item_id", "age", "gender", "occupation", "release_year", "genres"
    ]
    assert (len(splits.train), len(splits.validation)) == (80_000, 20_000)
    assert splits.train.indices.shape == (80_000, 7, 6)  # up to 6 genres per film
    assert splits.train.oov == 0 and 0 < splits.validation.oov < 100
    genres = space.field_names.index("genres")
    np.testing.assert_allclose(splits.train.weights[:, genres].sum(axis=1), 1.0, rtol=1e-6)
    assert len(space.fields[space.field_names.index("user_id")].vocabulary) == 943
    assert set(np.unique(splits.train.labels)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert splits.fingerprints["ml-100k.inter"].rows == 100_000


@needs_ml100k
@pytest.mark.slow
def test_ml100k_config_trains_one_tiny_epoch(tmp_path: Path) -> None:
    from training.run import run

    overrides = [f"data.train={REPO / 'configs/schemas/ml100k.toml'}", f"data.root={ML100K}",
                 "model.embed_dim=4", "train.epochs=1", "train.batch_size=8192"]
    manifest = run(load_config(REPO / "configs" / "ml100k-fm.toml", overrides), tmp_path)
    assert manifest.metrics["rmse"] < 1.3  # about 1.5 s; no time assertion on a shared CPU
