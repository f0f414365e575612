"""The generator's rows as traffic: instances the service reads as training does, the true
probabilities beside them, and clicks decided by those probabilities."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training import criteo
from training.config import CriteoOptions
from training.criteo import synth as criteo_synth
from training.criteo import traffic
from training.criteo.reader import Reader
from training.criteo.vocab import feature_space
from training.stream.counts import count
from training.stream.encode import Encoder

START = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("traffic") / "day.tsv"
    criteo_synth.write(path, 3000, criteo_synth.World(scale=0.001), seed=2, chunk_rows=1000)
    return path


def served(n: int, probability: float | np.ndarray) -> pa.Table:
    return pa.table({
        "impression_id": [f"r{i}-0" for i in range(n)],
        "time": pa.array([START + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "probability": np.broadcast_to(np.asarray(probability, np.float64), (n,)),
    })


def test_instances_encode_as_training_encodes_the_rows(log: Path) -> None:
    """What the loop sends is what training reads: FeatureSpace.encode (the service's) of
    the instances equals the vectorised encoder's output for the same rows."""
    options = CriteoOptions(missing="learned", hash_buckets=5)
    space = feature_space(count(Reader(log, options).batches(), criteo.KINDS), options, min_count=2)
    for batch in Reader(log, options).batches():
        instances = traffic.instances(batch)
        assert all("label" not in i and None not in i.values() for i in instances)
        assert any("I1" not in i for i in instances)  # an empty integer column is left out
        block = Encoder(space, "binary").encode(batch)
        assert np.array_equal(space.encode(instances).indices, block.indices)


def test_requests_carry_each_rows_true_probability(log: Path) -> None:
    probabilities = np.load(f"{log}.probs.npy")
    parts = list(traffic.requests(log, 256))
    assert [len(p.instances) for p in parts[:4]] == [256, 256, 256, 256]
    assert sum(len(p.instances) for p in parts) == 3000
    assert np.array_equal(np.concatenate([p.probabilities for p in parts]), probabilities.astype(np.float64))
    labels = np.array([float(line.split("\t", 1)[0]) for line in log.read_text().splitlines()])
    assert np.array_equal(np.concatenate([p.labels for p in parts]), labels)


def test_clicks_follow_the_probabilities() -> None:
    probabilities = np.where(np.arange(20_000) % 2 == 0, 0.05, 0.5)
    events = traffic.clicks(served(20_000, probabilities), HOUR, seed=1)
    index = np.array([int(i[1:-2]) for i in events.column("impression_id").to_pylist()])
    assert len(set(index)) == len(index)
    assert abs(np.mean(index % 2 == 0) * 0.55 - 0.05) < 0.01  # 1 in 11 clicks from the 0.05 rows
    assert 0.26 < len(index) / 20_000 < 0.29


def test_click_times_fall_inside_the_window_or_after_it_with_a_margin() -> None:
    table = served(5000, 0.5)
    events = traffic.clicks(table, HOUR, seed=2, late=0.2, duplicates=0.1)
    shown = dict(zip(*table.select(["impression_id", "time"]).to_pydict().values(), strict=True))
    delays = [t - shown[i] for i, t in zip(*events.to_pydict().values(), strict=True)]
    on_time = [d for d in delays if d <= HOUR]
    late = [d for d in delays if d > HOUR]
    assert min(on_time) >= traffic.MARGIN and max(on_time) <= HOUR - traffic.MARGIN
    assert min(late) >= HOUR + traffic.MARGIN and max(late) <= 2 * HOUR
    assert 0.15 < len(late) / len(delays) < 0.25
    ids = events.column("impression_id").to_pylist()
    assert 0.07 < (len(ids) - len(set(ids))) / len(set(ids)) < 0.13
    assert events.schema == traffic.EVENT_SCHEMA


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_the_command_writes_an_events_file(tmp_path: Path, suffix: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    pq.write_table(served(200, 0.5), tmp_path / "served.parquet")
    out = tmp_path / f"events{suffix}"
    assert traffic.main(["--served", str(tmp_path / "served.parquet"), "--out", str(out),
                         "--window", "30m", "--seed", "4"]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["events"] == len(traffic.clicks(served(200, 0.5), timedelta(minutes=30), 4))
    text = out.read_bytes()
    if suffix == ".jsonl":
        first = json.loads(text.splitlines()[0])
        assert set(first) == {"impression_id", "time"} and first["time"].endswith("+00:00")
    elif suffix == ".csv":
        assert text.splitlines()[0] == b'"impression_id","time"'
    else:
        assert pq.read_table(out).num_rows == reported["events"]


def test_an_unknown_events_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=".csv, .jsonl or .parquet"):
        traffic.write_events(traffic.clicks(served(10, 1.0), HOUR, 0), tmp_path / "events.txt")
