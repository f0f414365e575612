"""Criteo-format logs: the reader, counts and vocabularies, cached shards, and parity of the
vectorised encoder with FeatureSpace.encode (the service's), on generated files and on the
real 200-row sample when it is present."""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.features import FeatureSpace, FieldKind
from model.manifest import Task
from training import criteo
from training.config import CriteoOptions, DataConfig, load_config
from training.criteo import synth as criteo_synth
from training.criteo.reader import COLUMNS, INTEGERS, Reader, sniff
from training.criteo.vocab import LOG_EDGES, feature_space, log_boundaries
from training.stream.counts import count
from training.stream.encode import Encoder

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "criteo-sample" / "criteo_sample.csv"
SAMPLE_OPTIONS = CriteoOptions(delimiter=",", header=True)
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason=f"the Criteo sample is not at {SAMPLE} (licensed; CI has it)")


def generate(path: Path, rows: int, seed: int = 0, scale: float = 0.001) -> Path:
    criteo_synth.write(path, rows, criteo_synth.World(scale=scale), seed, chunk_rows=1000)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("criteo")
    return {"train": generate(root / "train.tsv", 4000), "validation": generate(root / "valid.tsv", 1000, 1)}


def config(files: dict[str, Path], **criteo_options: Any) -> DataConfig:
    return DataConfig(format="criteo", train=str(files["train"]), validation=str(files["validation"]),
                      task="binary", min_count=3, criteo=CriteoOptions(**criteo_options))


def instances(path: Path, options: CriteoOptions) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The file's rows as a client would send them: numbers for I, strings for C; an empty
    column left out, sent as null or (where missing values are learned) as "" in turn."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        rows = list(csv.reader(f, delimiter=options.delimiter))[int(options.header):]
    out, labels = [], []
    for r, row in enumerate(rows):
        instance: dict[str, Any] = {}
        for c, (name, cell) in enumerate(zip(COLUMNS[1:], row[1:], strict=True)):
            if cell:
                instance[name] = float(cell) if name in INTEGERS else cell
            elif (r + c) % 3 == 1 or (r + c) % 3 == 2 and options.missing == "learned":
                instance[name] = None if (r + c) % 3 == 1 else ""
        out.append(instance)
        labels.append(float(row[0]))
    return out, np.array(labels, np.float32)


def encode_file(path: Path, space: FeatureSpace, options: CriteoOptions, task: Task = "binary"):
    encoder = Encoder(space, task)
    blocks = [encoder.encode(b) for b in Reader(path, options).batches()]
    indices = np.concatenate([b.indices for b in blocks])
    weights = (np.concatenate([b.weights for b in blocks]) if blocks[0].weights is not None
               else (indices != 0).astype(np.float32))
    return indices, weights, np.concatenate([b.labels for b in blocks]), sum(b.oov for b in blocks)


def space_of(path: Path, options: CriteoOptions, min_count: int) -> FeatureSpace:
    return feature_space(count(Reader(path, options).batches(), criteo.KINDS), options, min_count)


def assert_parity(path: Path, space: FeatureSpace, options: CriteoOptions) -> None:
    indices, weights, labels, oov = encode_file(path, space, options)
    raw, raw_labels = instances(path, options)
    served = space.encode(raw)
    assert np.array_equal(indices, served.indices) and indices.dtype == np.int32
    assert np.array_equal(weights, served.weights)
    assert np.array_equal(labels, (raw_labels > 0).astype(np.float32))
    assert oov == len([v for v in served.oov if v[2] != ""])


@pytest.mark.parametrize("options", [
    CriteoOptions(),
    CriteoOptions(hash_buckets=7),
    CriteoOptions(missing="empty", integers="numeric"),
    CriteoOptions(integers="numeric", hash_buckets=3),
])
def test_vectorised_encoding_matches_the_service_encoder(files: dict[str, Path],
                                                         options: CriteoOptions) -> None:
    space = space_of(files["train"], options, min_count=3)
    assert_parity(files["validation"], space, options)


@needs_sample
@pytest.mark.parametrize("options", [SAMPLE_OPTIONS, SAMPLE_OPTIONS.model_copy(update={"hash_buckets": 4})])
def test_real_sample_reads_and_encodes_as_served(options: CriteoOptions) -> None:
    space = space_of(SAMPLE, options, min_count=2)
    assert [f.name for f in space.fields] == COLUMNS[1:]
    assert_parity(SAMPLE, space, options)
    reader = Reader(SAMPLE, options)
    labels = np.concatenate([b.column("label").to_numpy() for b in reader.batches()])
    assert len(labels) == 200 and labels.sum() == 49
    assert sniff(SAMPLE) == (",", True)


def test_missing_values_get_their_own_index(files: dict[str, Path]) -> None:
    space = space_of(files["train"], CriteoOptions(), min_count=3)
    encoded = space.encode([{"C1": "68fd1e64", "I3": 19}, {"C1": None, "I3": ""}])
    c1, i3 = space.field_names.index("C1"), space.field_names.index("I3")
    assert encoded.indices[1, c1, 0] == space.missing_index(c1)
    assert encoded.indices[1, i3, 0] == space.missing_index(i3)
    assert (encoded.weights == 1).all()  # every field: a value or its missing index
    assert encoded.oov == [(0, "C1", "68fd1e64")]


def test_min_count_keeps_frequent_values_most_frequent_first(tmp_path: Path) -> None:
    path = generate(tmp_path / "t.tsv", 3000)
    counts = count(Reader(path, CriteoOptions()).batches(), criteo.KINDS)
    table = counts.values["C2"].to_pandas().set_index("values")["counts"]
    space = feature_space(counts, CriteoOptions(), min_count=5)
    vocab = space.fields[space.field_names.index("C2")].vocabulary
    assert set(vocab) == set(table[table >= 5].index)
    assert [int(table[v]) for v in vocab] == sorted((int(table[v]) for v in vocab), reverse=True)
    assert counts.rows == 3000


def test_rare_values_hash_into_buckets_and_are_still_reported(files: dict[str, Path]) -> None:
    space = space_of(files["train"], CriteoOptions(hash_buckets=5), min_count=3)
    c3 = space.field_names.index("C3")
    encoded = space.encode([{"C3": "never-seen"}])
    spec, offset = space.fields[c3], space.offsets[c3]
    assert offset + spec.hash_offset <= encoded.indices[0, c3, 0] < offset + spec.table_size
    assert encoded.indices[0, c3, 0] == space.hash_index(c3, "never-seen")
    assert encoded.oov == [(0, "C3", "never-seen")]
    assert str(space.describe(c3, encoded.indices[0, c3], encoded.weights[0, c3])).startswith("<hash ")


def test_log_buckets_reproduce_floor_log_squared() -> None:
    edges = log_boundaries(-10, 1e9)
    for x in [-3, -1, 0, 1, 2, 3, 4, 5, 17, 100, 12345, 10**7]:
        bucket = int(np.searchsorted(edges, x, side="right"))
        lower = [-np.inf, *edges][bucket]
        expected = float(x) if x <= 2 else float(np.floor(np.log(x) ** 2))
        if x <= 2:
            assert lower == (expected if x >= -2 else -np.inf)
        else:  # bucket k of the transform starts at exp(sqrt(k)) (k = 1 starts at 3)
            assert lower == (3.0 if expected == 1 else pytest.approx(np.exp(np.sqrt(expected))))
    assert log_boundaries(0, 100) == [e for e in LOG_EDGES if 0 < e <= 100]


def test_gzip_input_reads_as_plain(files: dict[str, Path], tmp_path: Path) -> None:
    packed = tmp_path / "valid.tsv.gz"
    with files["validation"].open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    space = space_of(files["train"], CriteoOptions(), min_count=3)
    plain, gz = encode_file(files["validation"], space, CriteoOptions()), encode_file(packed, space,
                                                                                       CriteoOptions())
    assert all(np.array_equal(a, b) for a, b in zip(plain[:3], gz[:3], strict=True))
    assert sniff(packed) == ("\t", False)


def test_prepare_builds_shards_and_reuses_them(files: dict[str, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    first = criteo.prepare(config(files), cache)
    assert len(first.train) == 4000 and len(first.validation) == 1000
    assert first.train.implicit_weights and first.validation.oov > 0
    assert first.fingerprints["train"].rows == 4000 and len(first.fingerprints["train"].sha256) == 64
    data = first.train.read(0, 4000)
    indices, weights, labels, _ = encode_file(files["train"], first.space, CriteoOptions())
    assert np.array_equal(data.indices, indices) and np.array_equal(data.labels, labels)
    entries = sorted(p.name for p in cache.iterdir())
    caplog.clear()
    again = criteo.prepare(config(files), cache)
    assert sorted(p.name for p in cache.iterdir()) == entries  # nothing built anew
    assert not [r for r in caplog.records if "rows in" in r.getMessage()]
    assert again.train.directory == first.train.directory

    smaller = criteo.prepare(config(files, hash_buckets=2), cache)  # new space, same counts
    assert len(list(cache.iterdir())) == len(entries) + 2
    assert smaller.space.num_features > first.space.num_features


def test_a_changed_file_is_read_again(files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    local = {k: Path(shutil.copy(v, tmp_path / v.name)) for k, v in files.items()}
    first = criteo.prepare(config(local), cache)
    with local["validation"].open("a") as f:
        f.write("1" + "\t" * 39 + "\n")
    stat = local["validation"].stat()
    os.utime(local["validation"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = criteo.prepare(config(local), cache)
    assert len(second.validation) == len(first.validation) + 1
    assert second.train.directory == first.train.directory
    assert second.fingerprints["validation"].sha256 != first.fingerprints["validation"].sha256


def test_evaluation_data_streams_blocks_encoded_with_a_given_space(files: dict[str, Path]) -> None:
    space = space_of(files["train"], CriteoOptions(), min_count=3)
    blocks = list(criteo.evaluation_data(files["validation"], space, "binary"))
    assert sum(len(b) for b in blocks) == 1000
    indices = encode_file(files["validation"], space, CriteoOptions())[0]
    assert np.array_equal(np.concatenate([b.indices for b in blocks]), indices)


def test_a_new_day_keeps_old_positions_and_adds_new_values(files: dict[str, Path], tmp_path: Path) -> None:
    options = CriteoOptions(hash_buckets=2)
    old = criteo.prepare(config(files, hash_buckets=2), tmp_path / "cache").space
    day2 = {"train": generate(tmp_path / "day2.tsv", 4000, seed=5), "validation": files["validation"]}
    grown = criteo.prepare(config(day2, hash_buckets=2), tmp_path / "cache", previous=old)
    new, mapping = grown.space, grown.mapping
    assert mapping is not None and mapping.shape == (old.num_features,) and mapping[0] == 0
    counts = criteo.training_counts(day2["train"], options, tmp_path / "cache")
    for position, spec in enumerate(old.fields):
        if spec.kind != FieldKind.CATEGORICAL:
            continue
        table = counts.values[spec.name].to_pandas().set_index("values")["counts"]
        for value in spec.vocabulary:
            moved = mapping[old.index_of(position, value)]
            if table.get(value, 0) >= 3:
                assert moved == new.index_of(position, value)
            else:
                assert moved == -1 and new.index_of(position, value) is None
        fresh = set(new.fields[position].vocabulary) - set(spec.vocabulary)
        assert all(table[v] >= 3 for v in fresh)
        assert mapping[old.missing_index(position)] == new.missing_index(position)
        assert mapping[old.oov_index(position)] == new.oov_index(position)
    kept = mapping[mapping >= 0]
    assert len(np.unique(kept)) == len(kept)  # one old row per new row
    # every old integer bucket survives: its lower edge is still an edge
    for position, spec in enumerate(old.fields[:13]):
        assert set(spec.boundaries) <= set(new.fields[position].boundaries)


def test_keep_dropped_keeps_every_old_value(files: dict[str, Path], tmp_path: Path) -> None:
    old = criteo.prepare(config(files), tmp_path / "cache").space
    day2 = {"train": generate(tmp_path / "day2.tsv", 2000, seed=6), "validation": files["validation"]}
    grown = criteo.prepare(config(day2, keep_dropped=True), tmp_path / "cache", previous=old)
    assert grown.mapping is not None and (grown.mapping >= 0).all()
    for position, spec in enumerate(old.fields[13:], start=13):
        assert grown.space.fields[position].vocabulary[: len(spec.vocabulary)] == spec.vocabulary


def test_config_defaults_for_criteo() -> None:
    data = DataConfig.model_validate({"format": "criteo"})
    assert data.min_count == 10 and data.criteo.delimiter == "\t" and data.criteo.integers == "log_buckets"
    assert DataConfig.model_validate({"format": "libfm"}).min_count == 1
    for name in ("criteo-afm.toml", "criteo-fm.toml"):
        cfg = load_config(REPO / "configs" / name, ["data.train=a.tsv", "data.validation=b.tsv"])
        assert cfg.data.format == "criteo" and cfg.data.task == "binary" and cfg.model.embed_dim == 16


def test_generator_writes_truth_beside_the_file(files: dict[str, Path]) -> None:
    truth = json.loads(Path(f"{files['train']}.truth.json").read_text())
    probs = np.load(f"{files['train']}.probs.npy")
    assert truth["rows"] == len(probs) == 4000
    assert 0.5 < truth["bayes_auc"] < 1 and 0 < truth["bayes_logloss"] < 0.69


@pytest.mark.slow
def test_trained_bundle_scores_a_criteo_file_with_afm_eval(files: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import train_bundle
    from training.cli import eval_main

    out = tmp_path / "run"
    manifest = train_bundle("criteo-fm.toml", out, [
        f"data.train={files['train']}", f"data.validation={files['validation']}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.min_count=3", "train.epochs=1",
        "model.embed_dim=4", "train.compile=false"])
    assert [f.missing for f in manifest.fields] == ["learned"] * 39
    assert manifest.fields[0].kind == FieldKind.BUCKETIZED
    capsys.readouterr()
    assert eval_main(["--model", str(out), "--data", str(files["validation"]), "--format", "criteo"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 1000 and result["oov"] > 0
    assert result["auc"] == pytest.approx(manifest.metrics["auc"], abs=1e-4)
    assert result["logloss"] == pytest.approx(manifest.metrics["logloss"], abs=1e-4)


@pytest.mark.slow
def test_criteo_afm_starts_as_an_fm_and_learns_its_attention(files: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """The committed criteo-afm recipe: one run, no FM trained first; the AFM starts with uniform
    attention (h = 0) and p = P, and learns the attention with its vectors."""
    from tests.helpers import train_bundle
    from training.run import load_checkpoint

    out = tmp_path / "run"
    manifest = train_bundle("criteo-afm.toml", out, [
        f"data.train={files['train']}", f"data.validation={files['validation']}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.min_count=3", "train.epochs=1",
        "model.embed_dim=4", "model.attention_dim=4"])
    afm = load_checkpoint(out)
    assert (afm.config.kind, manifest.kind) == ("afm", "afm")
    assert not (out / "pretrain").exists()
    state = afm.state_dict()
    assert state["attention.h.weight"].abs().sum() > 0  # started at 0 (uniform), then trained
    pairs = afm.config.num_fields * (afm.config.num_fields - 1) // 2
    assert abs(float(state["p"].mean()) - pairs) < 1.0  # started at P, moved by a few small steps


@needs_sample
def test_afm_eval_reads_the_real_sample_with_its_header(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import train_bundle
    from training.cli import eval_main

    out = tmp_path / "run"
    train_bundle("criteo-fm.toml", out, [
        f"data.train={SAMPLE}", f"data.validation={SAMPLE}", "data.criteo.delimiter=','",
        "data.criteo.header=true", f"data.cache_dir={tmp_path / 'cache'}", "data.min_count=2",
        "train.epochs=1", "model.embed_dim=4", "train.compile=false"])
    capsys.readouterr()
    assert eval_main(["--model", str(out), "--data", str(SAMPLE), "--format", "criteo"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 200 and 0 <= result["auc"] <= 1
