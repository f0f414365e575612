"""afm-join: events labelled onto the impression log within the window, every impression
kept, the counts exact, one model at a time, and bad input refused in one line."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from model import impressions as im
from model.features import FieldKind, FieldSpec
from training.criteo import synth as criteo_synth
from training.criteo import traffic
from training.join.cli import main
from training.metrics import evaluate_predictions

REPO = Path(__file__).resolve().parents[2]

FIELDS = [
    FieldSpec(name="user", kind=FieldKind.CATEGORICAL, vocabulary=["u1", "u2"]),
    FieldSpec(name="tags", kind=FieldKind.MULTI, vocabulary=["a", "b"], max_entries=2),
    FieldSpec(name="age", kind=FieldKind.NUMERIC),
    FieldSpec(name="price", kind=FieldKind.BUCKETIZED, boundaries=[1.0, 10.0]),
]
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)


VALUES: dict[FieldKind, Callable[[int], Any]] = {
    FieldKind.CATEGORICAL: lambda i: f"u{i}", FieldKind.MULTI: lambda i: ["a", "b"][: i % 3],
    FieldKind.NUMERIC: float, FieldKind.BUCKETIZED: float}


def impressions(n: int, model: tuple[str, str] = ("m", "1"), fields: Sequence[FieldSpec] = FIELDS,
                prefix: str = "r") -> pa.Table:
    """n impressions `{prefix}{i}-0`, one a minute from T0."""
    rows = []
    for i in range(n):
        features = {f.name: VALUES[f.kind](i) for f in fields}
        if fields is FIELDS:
            features["price"] = None
        rows.append({im.IMPRESSION_ID: f"{prefix}{i}-0", im.REQUEST_ID: f"{prefix}{i}", im.POSITION: 0,
                     im.TIME: T0 + i * MINUTE, im.ROUTE: "predict", im.MODEL_NAME: model[0],
                     im.MODEL_VERSION: model[1], im.MODEL_SHA256: "0" * 64, im.SCORE: 0.0,
                     im.PREDICTION: 0.5, im.OOV: [], im.FEATURES: features})
    return pa.Table.from_pylist(rows, schema=im.impression_schema(fields))


def event_table(events: Sequence[tuple[Any, ...]]) -> pa.Table:
    """(impression id, time[, label]) tuples as a table."""
    columns: dict[str, list[Any]] = {"impression_id": [e[0] for e in events], "time": [e[1] for e in events]}
    if any(len(e) == 3 for e in events):
        columns["label"] = [e[2] if len(e) == 3 else None for e in events]
    return pa.table(columns)


def write_events(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        rows = [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
                for row in table.to_pylist()]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def join(tmp_path: Path, *args: str) -> dict[str, Any]:
    assert main(["--impressions", str(tmp_path / "log"), "--window", "1h",
                 "--out", str(tmp_path / "day"), *args]) == 0
    return json.loads((tmp_path / "day" / "_join.json").read_text())


def labels(day: Path) -> dict[str, float]:
    table = ds.dataset(day, format="parquet").to_table(columns=["impression_id", "label"])
    return dict(zip(*table.to_pydict().values(), strict=True))


# Impression i is shown at T0 + i minutes.
EVENTS: list[tuple[Any, ...]] = [
    ("r0-0", T0 + 30 * MINUTE),                      # matched
    ("r1-0", T0 + MINUTE + HOUR),                    # matched: the window's last instant
    ("r2-0", T0 + 2 * MINUTE + HOUR + US),           # late by a microsecond
    ("r3-0", T0 + 3 * MINUTE - US),                  # early by a microsecond
    ("r4-0", T0 + 4 * MINUTE),                       # matched: the impression's own instant
    ("r5-0", T0 + 6 * MINUTE), ("r5-0", T0 + 7 * MINUTE),  # matched twice: one duplicate
    ("r6-0", T0 + 7 * MINUTE, 0.0),                  # an explicit 0 outcome
    ("r7-0", T0 + 8 * MINUTE, 2.0), ("r7-0", T0 + 9 * MINUTE, None),  # 2 and 1 (a duplicate): 2
    ("stray-0", T0),                                 # no such impression
    ("r8-0", T0 + 9 * MINUTE), ("r8-0", T0 + 3 * HOUR),  # one matched, one late
]
EXPECTED_LABELS = {"r0-0": 1.0, "r1-0": 1.0, "r2-0": 0.0, "r3-0": 0.0, "r4-0": 1.0, "r5-0": 1.0,
                   "r6-0": 0.0, "r7-0": 2.0, "r8-0": 1.0, "r9-0": 0.0, "r10-0": 0.0}


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_events_label_their_impressions_within_the_window(tmp_path: Path, suffix: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    im.write_part(tmp_path / "log", impressions(11), "w1", 0)
    events = write_events(event_table(EVENTS), tmp_path / f"events{suffix}")
    counts = join(tmp_path, "--events", str(events))
    assert labels(tmp_path / "day") == EXPECTED_LABELS
    assert {k: counts[k] for k in ("impressions", "rows", "positives", "negatives", "events",
                                   "events_matched", "events_unmatched", "events_late",
                                   "events_early", "events_other_model", "duplicates")} == {
        "impressions": 11, "rows": 11, "positives": 6, "negatives": 5, "events": 13,
        "events_matched": 9, "events_unmatched": 1, "events_late": 2, "events_early": 1,
        "events_other_model": 0, "duplicates": 2}
    out, err = capsys.readouterr()
    assert json.loads(out) == counts
    assert "9 matched (2 duplicates), 2 late, 1 early, 1 unmatched" in err


def test_the_day_has_the_models_fields_as_columns(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(5), "w1", 0)
    join(tmp_path, "--events", str(write_events(event_table(EVENTS[:1]), tmp_path / "e.csv")))
    table = ds.dataset(tmp_path / "day", format="parquet").to_table()
    assert table.schema.names == ["label", "user", "tags", "age", "price", "impression_id", "time",
                                  "model_version", "prediction", "shadow_model_version",
                                  "shadow_prediction"]
    assert [table.schema.field(n).type for n in table.schema.names] == [
        pa.float32(), pa.string(), pa.list_(pa.string()), pa.float64(), pa.float64(), pa.string(),
        pa.timestamp("us", tz="UTC"), pa.string(), pa.float64(), pa.string(), pa.float64()]
    assert all(f.nullable for f in table.schema)  # the same schema whatever a day's data
    rows = {r["impression_id"]: r for r in table.to_pylist()}
    assert rows["r2-0"]["user"] == "u2" and rows["r2-0"]["tags"] == ["a", "b"]
    assert rows["r2-0"]["age"] == 2.0 and rows["r2-0"]["price"] is None
    assert rows["r3-0"]["time"] == T0 + 3 * MINUTE and rows["r3-0"]["model_version"] == "1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_the_live_model_is_compared_with_its_shadow_on_the_rows_both_scored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    n = 400
    live, shadow = rng.uniform(0.01, 0.99, n), rng.uniform(0.01, 0.99, n)
    shadow[::7] = shadow[1]  # ties, which AUC counts as a half
    shadowed = np.arange(n) % 4 != 0  # the shadow scored three requests in four
    table = impressions(n)
    table = table.set_column(table.schema.get_field_index(im.PREDICTION), im.PREDICTION,
                             pa.array(live))
    for name, column in ((im.SHADOW_PREDICTION, pa.array(shadow, mask=~shadowed)),
                         (im.SHADOW_MODEL_VERSION, pa.array(["2"] * n, mask=~shadowed))):
        table = table.set_column(table.schema.get_field_index(name), name, column)
    im.write_part(tmp_path / "log", table, "w1", 0)
    clicked = rng.uniform(size=n) < live
    events = [(f"r{i}-0", T0 + (int(i) + 1) * MINUTE) for i in np.flatnonzero(clicked)]
    counts = join(tmp_path, "--events", str(write_events(event_table(events), tmp_path / "e.csv")))
    labels_ = clicked[shadowed].astype(np.float64)
    expected = {"live": evaluate_predictions("binary", labels_, live[shadowed], (0.0, 1.0)),
                "shadow": evaluate_predictions("binary", labels_, shadow[shadowed], (0.0, 1.0))}
    found = counts["shadow"]
    assert found["rows"] == int(shadowed.sum()) and found["versions"] == ["2"]
    for model in ("live", "shadow"):
        assert found[model] == pytest.approx(expected[model], rel=1e-9)
    assert f"{int(shadowed.sum())} rows also scored by shadow 2: live / shadow AUC" in capsys.readouterr().err


def test_a_day_without_shadow_scores_has_no_comparison(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(5), "w1", 0)
    counts = join(tmp_path, "--events", str(write_events(event_table(EVENTS[:1]), tmp_path / "e.csv")))
    assert counts["shadow"] is None


def test_generated_clicks_come_back_as_labels(tmp_path: Path) -> None:
    """The generator's clicks on its own rows: every on-time click is a positive, every late
    one counted late, and nothing else labelled."""
    world = criteo_synth.World(scale=0.001)
    chunk = next(criteo_synth.chunks(world, 3000, seed=1, chunk_rows=3000))
    fields = [FieldSpec(name=n, kind=FieldKind.BUCKETIZED) for n in chunk.table.column_names[1:14]] + [
        FieldSpec(name=n, kind=FieldKind.CATEGORICAL) for n in chunk.table.column_names[14:]]
    table = impressions(3000, fields=fields)
    features = [{k: v for k, v in row.items()} for row in chunk.table.drop_columns(["label"]).to_pylist()]
    table = table.set_column(table.schema.get_field_index(im.FEATURES), im.FEATURES,
                             pa.array(features, table.schema.field(im.FEATURES).type))
    im.write_part(tmp_path / "log", table, "w1", 0)
    served = pa.table({"impression_id": table.column(im.IMPRESSION_ID), "time": table.column(im.TIME),
                       "probability": chunk.probs})
    events = traffic.clicks(served, HOUR, seed=3, late=0.1, duplicates=0.05)
    traffic.write_events(events, tmp_path / "events.parquet")
    counts = join(tmp_path, "--events", str(tmp_path / "events.parquet"))
    late = pc_late(served, events)
    assert counts["events_late"] == int(late.sum()) and counts["events_early"] == 0
    on_time = set(np.asarray(events.column("impression_id").to_pylist())[~late].tolist())
    got = labels(tmp_path / "day")
    assert {i for i, y in got.items() if y > 0} == on_time and counts["positives"] == len(on_time)
    day = ds.dataset(tmp_path / "day", format="parquet").to_table().sort_by("impression_id")
    back = table.sort_by(im.IMPRESSION_ID).column(im.FEATURES).flatten()
    assert [day.column(f.name).to_pylist() for f in fields] == [c.to_pylist() for c in back]


def pc_late(served: pa.Table, events: pa.Table) -> np.ndarray:
    shown = dict(zip(*served.select(["impression_id", "time"]).to_pydict().values(), strict=True))
    return np.array([t - shown[i] > HOUR for i, t in zip(*events.to_pydict().values(), strict=True)])


def test_an_id_served_twice_credits_the_impression_whose_window_holds_the_event(tmp_path: Path) -> None:
    """A client that reuses its X-Request-ID (or retries a request) gives the log an id
    twice: each event credits the latest copy shown before it within the window, and each
    copy stays a row of its own."""
    first = impressions(2)
    again = impressions(1).set_column(3, im.TIME, pa.array([T0 + 2 * HOUR], im.TIME_TYPE))
    im.write_part(tmp_path / "log", first, "w1", 0)
    im.write_part(tmp_path / "log", again, "w1", 1)
    events = [("r0-0", T0 + 2 * HOUR + MINUTE), ("r0-0", T0 + 30 * MINUTE), ("r1-0", T0 + MINUTE)]
    counts = join(tmp_path, "--events", str(write_events(event_table(events), tmp_path / "e.csv")))
    assert counts["rows"] == 3 and counts["events_matched"] == 3 and counts["duplicates"] == 0
    assert counts["events_on_repeated_ids"] == 2 and counts["positives"] == 3
    day = ds.dataset(tmp_path / "day", format="parquet").to_table().to_pylist()
    assert sorted((r["impression_id"], r["time"], r["label"]) for r in day) == [
        ("r0-0", T0, 1.0), ("r0-0", T0 + 2 * HOUR, 1.0), ("r1-0", T0 + MINUTE, 1.0)]


def test_versions_of_one_model_are_joined_together_unless_one_is_chosen(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(4, ("m", "1")), "w1", 0)
    im.write_part(tmp_path / "log", impressions(3, ("m", "2"), prefix="s"), "w1", 1)
    events = write_events(event_table([("r0-0", T0), ("s1-0", T0 + MINUTE), ("s2-0", T0 + HOUR * 2)]),
                          tmp_path / "e.jsonl")
    both = join(tmp_path, "--events", str(events))
    assert both["rows"] == 7 and both["models"] == ["m:1", "m:2"] and both["events_matched"] == 2
    (tmp_path / "day").rename(tmp_path / "both")
    one = join(tmp_path, "--events", str(events), "--model", "m:2")
    assert one["rows"] == 3 and one["other_models"] == {"m:1": 4}
    assert one["events_other_model"] == 1 and one["events_matched"] == 1 and one["events_late"] == 1
    assert set(labels(tmp_path / "day")) == {"s0-0", "s1-0", "s2-0"}


def test_models_with_other_fields_need_a_choice(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = [FieldSpec(name="page", kind=FieldKind.CATEGORICAL),
             FieldSpec(name="slot", kind=FieldKind.NUMERIC)]
    im.write_part(tmp_path / "log", impressions(4, ("ads", "1")), "w1", 0)
    im.write_part(tmp_path / "log", impressions(2, ("feed", "7"), other, prefix="f"), "w2", 0)
    events = write_events(event_table([("f1-0", T0 + 2 * MINUTE), ("r1-0", T0 + 2 * MINUTE)]),
                          tmp_path / "e.csv")
    args = ["--impressions", str(tmp_path / "log"), "--events", str(events), "--window", "1h",
            "--out", str(tmp_path / "day")]
    assert exit_code(args) == 2
    err = one_line(capsys)
    assert "ads:1 (4 rows), feed:7 (2 rows)" in err and "--model" in err
    counts = join(tmp_path, "--events", str(events), "--model", "feed")
    assert counts["rows"] == 2 and counts["other_models"] == {"ads:1": 4}
    assert counts["events_matched"] == 1 and counts["events_other_model"] == 1
    assert ds.dataset(tmp_path / "day", format="parquet").schema.names[:3] == ["label", "page", "slot"]


def exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as stopped:
        main(args)
    return int(stopped.value.code or 0)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("afm-join: "), err
    return lines[0]


@pytest.mark.parametrize("times", [
    ["2024-05-01T10:30:00Z", "2024-05-01T11:30:00+01:00", "2024-05-01 10:30:00"],
    [1714559400, 1714559400.0, 1714559400],
    ["1714559400", "1714559400.000", "1714559400"],
    ["2024-05-01T10:30:00Z", "1714559400", "2024-05-01T10:30:00"],
])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_event_times_in_each_form(tmp_path: Path, times: list[Any], suffix: str) -> None:
    im.write_part(tmp_path / "log", impressions(3), "w1", 0)
    ids = ["r0-0", "r1-0", "r2-0"]
    if suffix == ".jsonl":
        text = "".join(json.dumps({"impression_id": i, "time": t}) + "\n"
                       for i, t in zip(ids, times, strict=True))
    else:
        text = "impression_id,time\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, times, strict=True))
    (tmp_path / f"e{suffix}").write_text(text)
    counts = join(tmp_path, "--events", str(tmp_path / f"e{suffix}"))
    assert counts["events_matched"] == 3  # 10:30 UTC, within an hour of 10:00, 10:01, 10:02


def test_gzip_events_and_folders_of_them(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(3), "w1", 0)
    (tmp_path / "events").mkdir()
    with gzip.open(tmp_path / "events" / "a.csv.gz", "wt") as f:
        f.write("impression_id,time\nr0-0,2024-05-01T10:00:00Z\n")
    with gzip.open(tmp_path / "events" / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"impression_id": "r1-0", "time": "2024-05-01T10:05:00Z"}) + "\n")
    (tmp_path / "events" / "_SUCCESS").write_text("")
    (tmp_path / "events" / "quiet-hour.jsonl").write_text("")  # no events: no rows, no error
    counts = join(tmp_path, "--events", str(tmp_path / "events"))
    assert counts["events"] == 2 and counts["positives"] == 2


def test_columns_are_named_by_options(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(3), "w1", 0)
    pq.write_table(pa.table({"imp": ["r0-0", "r1-0"], "ts": [T0, T0], "outcome": [3.0, None]}),
                   tmp_path / "e.parquet")
    join(tmp_path, "--events", str(tmp_path / "e.parquet"), "--id-column", "imp", "--time-column", "ts",
         "--label-column", "outcome")
    assert labels(tmp_path / "day") == {"r0-0": 3.0, "r1-0": 0.0, "r2-0": 0.0}  # r1 is early


BAD_EVENTS = {
    "ragged.csv": ('impression_id,time\nr0-0,2024-05-01T10:00:00Z\nr1-0\n', "malformed"),
    "broken.jsonl": ('{"impression_id": "r0-0", "time": "2024-05-01T10:00:00Z"}\n{"impression_id": \n',
                     "malformed"),
    "fake.parquet": ("not parquet at all", "malformed"),
    "no_time.csv": ("impression_id,when\nr0-0,2024-05-01T10:00:00Z\n", "no time column 'time'"),
    "no_id.jsonl": ('{"id": "r0-0", "time": 1714557600}\n', "no impression id column 'impression_id'"),
    "bad_time.csv": ("impression_id,time\nr0-0,2024-05-01T10:00:00Z\nr1-0,yesterday\n",
                     "row 2: time 'yesterday' is not an ISO 8601 time"),
    "null_id.csv": ("impression_id,time\nr0-0,2024-05-01T10:00:00Z\n,2024-05-01T10:00:00Z\n",
                    "row 2 has no impression id"),
    "bad_label.csv": ("impression_id,time,label\nr0-0,2024-05-01T10:00:00Z,click\n",
                      "row 1: label 'click' is not a number"),
    "events.txt": ("impression_id,time\n", "unknown format"),
}


@pytest.mark.parametrize("name", sorted(BAD_EVENTS))
def test_bad_event_files_are_refused_in_one_line(tmp_path: Path, name: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    im.write_part(tmp_path / "log", impressions(3), "w1", 0)
    text, expected = BAD_EVENTS[name]
    (tmp_path / name).write_text(text)
    assert exit_code(["--impressions", str(tmp_path / "log"), "--events", str(tmp_path / name),
                      "--window", "1h", "--out", str(tmp_path / "day")]) == 2
    line = one_line(capsys)
    assert name in line and expected in line, line
    assert not (tmp_path / "day").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".afm-join")]


def bad_log(tmp_path: Path, case: str) -> Path:
    log = tmp_path / "log"
    if case == "missing":
        return log
    log.mkdir()
    if case == "no parquet":
        (log / "README.txt").write_text("nothing here")
        (log / ".part-w-000001.parquet.partial").write_text("in progress")
    elif case == "not an impression file":
        pq.write_table(pa.table({"impression_id": ["a"], "time": [T0]}), log / "part-x-000001.parquet")
    elif case == "time as text":
        table = impressions(1)
        table = table.set_column(3, im.TIME, pa.array(["2024-05-01T10:00:00Z"]))
        pq.write_table(table, log / "part-x-000001.parquet")
    elif case == "no rows":
        im.write_part(log, impressions(1), "w", 0)
        pq.write_table(impressions(0), next(log.rglob("*.parquet")))
    return log


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "no impression log directory"), ("empty", "no impression files"),
    ("no parquet", "no impression files"),
    ("not an impression file", "is not an impression file: it lacks model_name"),
    ("no rows", "hold no impressions"), ("time as text", "is not an impression file: time is string"),
])
def test_a_bad_impression_log_is_refused_in_one_line(tmp_path: Path, case: str, expected: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    log = bad_log(tmp_path, case)
    events = write_events(event_table([("r0-0", T0)]), tmp_path / "e.csv")
    assert exit_code(["--impressions", str(log), "--events", str(events), "--window", "1h",
                      "--out", str(tmp_path / "day")]) == 2
    assert expected in one_line(capsys)
    assert not (tmp_path / "day").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--window", "an hour"], "a window is a duration such as 1h"),
    (["--window", "0s"], "longer than 0"),
    (["--model", "nope"], "no impressions of --model nope"),
    (["--model", "m:"], "--model takes NAME or NAME:VERSION"),
    (["--events", "missing.csv"], "no events file"),
    (["--out", "full"], "exists and is not an empty directory"),
    (["--memory-limit", "lots"], "a memory limit is a size such as 512MB"),
    (["--threads", "0"], "threads must be at least 1"),
])
def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, args: list[str], expected: str,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    im.write_part(tmp_path / "log", impressions(3), "w1", 0)
    write_events(event_table([("r0-0", T0)]), tmp_path / "e.csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    given = dict(zip(args[::2], args[1::2], strict=True))
    defaults = {"--impressions": "log", "--events": "e.csv", "--window": "1h", "--out": "day"}
    argv = [item for key, value in {**defaults, **given}.items() for item in (key, value)]
    assert exit_code(argv) == 2
    assert expected in one_line(capsys)


def test_an_empty_out_directory_is_used(tmp_path: Path) -> None:
    im.write_part(tmp_path / "log", impressions(2), "w1", 0)
    (tmp_path / "day").mkdir()
    assert join(tmp_path, "--events", str(write_events(event_table([]), tmp_path / "e.parquet")))["rows"] == 2


def test_a_field_named_like_a_trace_column_is_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fields = [FieldSpec(name="time", kind=FieldKind.NUMERIC),
              FieldSpec(name="user", kind=FieldKind.CATEGORICAL)]
    im.write_part(tmp_path / "log", impressions(2, fields=fields), "w1", 0)
    events = write_events(event_table([("r0-0", T0)]), tmp_path / "e.csv")
    assert exit_code(["--impressions", str(tmp_path / "log"), "--events", str(events), "--window", "1h",
                      "--out", str(tmp_path / "day")]) == 2
    assert "fields named time" in one_line(capsys)


@pytest.mark.slow
def test_the_console_script_joins_the_benchmarks_generated_day(tmp_path: Path) -> None:
    """bench.join's day (the generator's rows as a Criteo model's log, its clicks as events)
    through the installed `afm-join`, as the benchmark runs it."""
    from bench import join as bench_join

    generated = bench_join.generate(tmp_path / "day", 3000, seed=4)
    record = bench_join.run("duckdb", tmp_path / "day", tmp_path / "out", "256MB")
    events = pq.read_table(tmp_path / "day" / "events.parquet")
    counts = record["counts"]
    assert counts["rows"] == 3000 and generated["events"] == events.num_rows
    assert counts["events_matched"] + counts["events_late"] + counts["events_unmatched"] == events.num_rows
    assert counts["events_unmatched"] == events.num_rows // 101  # the strays: 1% of the clicks
    names = pq.read_schema(next((tmp_path / "out").glob("*.parquet"))).names
    assert names == ["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27)),
                     "impression_id", "time", "model_version", "prediction", "shadow_model_version",
                     "shadow_prediction"]


@pytest.mark.slow
def test_afm_train_trains_on_the_joined_day(tmp_path: Path) -> None:
    """The day is what afm-train's Parquet format reads: a Criteo model's day trains as is."""
    if importlib.util.find_spec("training.formats") is None:
        pytest.skip("the Parquet training format (training/formats/) is not on this branch yet")
    from bench import join as bench_join

    bench_join.generate(tmp_path / "log", 3000, seed=5)
    bench_join.run("duckdb", tmp_path / "log", tmp_path / "day", "256MB")
    day = str(tmp_path / "day")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "afm-train"), "--config", str(REPO / "configs" / "criteo-fm.toml"),
         "--out", str(tmp_path / "run"), "--set", "data.format=parquet", "--set", f"data.train={day}",
         "--set", f"data.validation={day}", "--set", "data.min_count=2", "--set", "train.epochs=1",
         "--set", "train.compile=false", "--set", "train.batch_size=512",
         "--set", f"data.cache_dir={tmp_path / 'cache'}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["metrics"]["auc"] > 0.5
