"""The daily loop end to end, on generated Criteo-format days, with the real commands.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.loop [--rows 200000] [--work DIR]

1. Day 1: a generated log (the generator's world) trains day 1's model (`afm-train`,
   configs/criteo-afm.toml).
2. `afm-serve` serves it with the impression log on (AFM_IMPRESSION_LOG_DIR). Day 2's rows
   come from a drifted world (`synth --drift`: half the planted pair interactions gone, the
   others stronger) and are sent to /predict; the generator's own click probabilities decide
   which served impressions are clicked (`training.criteo.traffic`), written as an events file.
3. `afm-join` labels day 2's impressions with those clicks; `afm-train --set
   data.format=parquet --set train.init_from=<day 1>` trains day 2's model on the joined day
   (a tenth of it held out for early stopping).
4. Day 2's model shadows day 1's (`POST /admin/shadow`, fraction 1) on day 3's first rows:
   the impression log keeps both models' probabilities, the generator decides the clicks,
   and `afm-join` compares the two on them (its "shadow" counts), as a team would before
   promoting the candidate.
5. While day 3's rows are sent, `POST /admin/reload` swaps day 2's model in; every request
   must succeed, and every impression must be logged under the version that answered it.
6. `afm-eval` scores both models on day 3's rows (the drifted world, new rows).

Prints the figures as JSON (and a markdown table with --markdown). Processes started are
stopped; everything is written under --work (a temporary directory by default).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.dataset as ds

from bench.harness import ServerProcess
from model import impressions as im
from training.criteo import synth, traffic

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = REPO / "configs" / "criteo-afm.toml"
TOKEN = "daily-loop-admin-token-0123"
WINDOW = "1h"
DRIFT = 7  # the drifted world's seed (days 2 and 3)
SETTLE_S = 120.0  # how long the workers may take to all serve a reloaded model
HELD_OUT = 10  # 1 in HELD_OUT joined rows validates day 2's training
log = logging.getLogger("bench.loop")


@dataclass
class Options:
    rows: int = 200_000  # a day
    scale: float = 0.001  # the generator's cardinalities x this
    batch: int = 100  # instances a request
    clients: int = 4  # concurrent requests
    workers: int = 2
    shadow_rows: int = 20_000  # day 3's rows scored by day 2's model as a shadow
    reload_rows: int = 20_000  # day 3's rows sent while the reload happens
    epochs: int = 3
    lr: float = 0.001  # the config's
    batch_size: int = 1024  # training's (the config's 4,096 takes few steps on a small day)
    seed: int = 0


@dataclass
class Served:
    """What a client saw: per answered instance, its impression id, when, the true probability."""

    ids: list[str] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # impression id -> version answered
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, ids: list[str], probabilities: list[float], version: str) -> None:
        now = datetime.now(UTC)
        with self.lock:
            self.ids += ids
            self.times += [now] * len(ids)
            self.probabilities += probabilities
            self.versions.update(dict.fromkeys(ids, version))

    def table(self) -> pa.Table:
        return pa.table({"impression_id": self.ids,
                         "time": pa.array(self.times, pa.timestamp("us", tz="UTC")),
                         "probability": self.probabilities})


def run(command: list[str], work: Path) -> str:
    """A console script of this environment; its stdout (its last JSON line is the result)."""
    log.info("$ %s", shlex.join(command))
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=work, text=True,
                            capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {result.returncode}: {result.stderr[-3000:]}")
    return result.stdout


def last_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text.strip().splitlines()[-1]))


def generate(work: Path, options: Options) -> dict[str, Path]:
    """Day 1 (and its validation rows) in the generator's world; days 2 and 3 drifted."""
    days = {"day-1": (0, 1, options.rows), "day-1-valid": (0, 11, options.rows // 5),
            "day-2": (DRIFT, 2, options.rows), "day-3": (DRIFT, 3, options.rows)}
    paths = {}
    for name, (drift, seed, rows) in days.items():
        paths[name] = work / f"{name}.tsv"
        synth.write(paths[name], rows, synth.World(scale=options.scale, drift=drift),
                    seed + 100 * options.seed)
    return paths


def train(work: Path, out: str, version: str, options: Options, *sets: str) -> Path:
    run(["afm-train", "--config", str(CONFIG), "--out", str(work / "models" / out),
         "--set", f"version={version}", "--set", f"train.epochs={options.epochs}",
         "--set", f"train.lr={options.lr}", "--set", f"train.batch_size={options.batch_size}",
         "--set", f"train.micro_batch_size={min(options.batch_size, 1024)}",
         "--set", f"data.cache_dir={work / 'cache'}",
         *(x for kv in sets for x in ("--set", kv))], work)
    return work / "models" / out


@contextmanager
def serving(work: Path, options: Options) -> Iterator[ServerProcess]:
    env = {**os.environ, "AFM_IMPRESSION_LOG_DIR": str(work / "impressions"),
           "AFM_IMPRESSION_ROLL_SECONDS": "2", "AFM_MODELS_ROOT": str(work / "models"),
           "AFM_ADMIN_TOKEN": TOKEN, "AFM_LOG_LEVEL": "warning", "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("PROMETHEUS_")}
    server = ServerProcess(["--model-dir", str(work / "models" / "day-1"),
                            "--workers", str(options.workers)], env, work / "serve.log")
    with server:
        server.wait_ready()
        yield server


def send(url: str, path: Path, options: Options, limit: int | None = None) -> Served:
    """The rows of a generated day (its first `limit`) as /predict requests from `clients`
    threads."""
    parts = list(_limited(traffic.requests(path, options.batch), limit))
    served = Served()
    with ThreadPoolExecutor(options.clients) as pool:
        list(pool.map(lambda part: _one(url, part, served), parts))
    return served


def send_around(url: str, path: Path, options: Options, limit: int,
                action: Callable[[], str]) -> Served:
    """Requests before `action`, all the while it runs (in a thread) and after it: the
    first third of the rows, then rows again from the start until the action is done and
    every request of a wave is answered by the version it returns (all the workers have
    followed), then the last third."""
    parts = list(_limited(traffic.requests(path, options.batch), limit))
    third = max(1, len(parts) // 3)
    served = Served()
    with ThreadPoolExecutor(options.clients) as pool, ThreadPoolExecutor(1) as acting:
        list(pool.map(lambda part: _one(url, part, served), parts[:third]))
        done = acting.submit(action)
        again, deadline = itertools.cycle(parts), time.monotonic() + SETTLE_S
        while True:
            wave = list(itertools.islice(again, options.clients))
            answered = set(pool.map(lambda part: _one(url, part, served), wave))
            if done.done() and answered == {done.result()}:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not all serve the new model in {SETTLE_S} s")
        list(pool.map(lambda part: _one(url, part, served), parts[-third:]))
    return served


def _one(url: str, part: traffic.Traffic, served: Served) -> str | None:
    """One /predict request, recorded in `served`: the version that answered (None: failed)."""
    try:
        with httpx.Client(timeout=60) as client:  # a connection each: workers share them
            response = client.post(url + "/predict", json={"instances": part.instances})
        response.raise_for_status()
    except httpx.HTTPError as e:
        log.warning("a request failed: %s", e)
        with served.lock:
            served.failed += 1
        return None
    body = response.json()
    version = str(body["model"]["version"])
    served.add([p["impression_id"] for p in body["predictions"]], part.probabilities.tolist(),
               version)
    return version


def _limited(parts: Iterator[traffic.Traffic], rows: int | None) -> Iterator[traffic.Traffic]:
    sent = 0
    for part in parts:
        if rows is not None and sent >= rows:
            return
        sent += len(part.instances)
        yield part


def logged(directory: Path) -> pa.Table:
    """The impression log's closed files: id, version, request id."""
    files = [str(p) for p in im.part_files(directory)]
    return ds.dataset(files, format="parquet").to_table(
        columns=[im.IMPRESSION_ID, im.MODEL_VERSION, im.ROUTE]) if files else pa.table({})


def wait_logged(directory: Path, ids: set[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        table = logged(directory)
        have = set(table.column(im.IMPRESSION_ID).to_pylist()) if table.num_columns else set()
        if ids <= have:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ids - have)} served impressions not in the log's closed files")
        time.sleep(0.5)


def split(day: Path, out: Path) -> dict[str, int]:
    """The joined day as out/train and out/valid (1 in HELD_OUT impressions, by a hash of the
    id), streamed by DuckDB."""
    counts = {}
    with duckdb.connect() as db:
        for name, test in (("train", "<>"), ("valid", "=")):
            (out / name).mkdir(parents=True)
            query = (f"SELECT * FROM read_parquet('{day}/*.parquet') "
                     f"WHERE hash(impression_id) % {HELD_OUT} {test} 0")
            db.execute(f"COPY ({query}) TO '{out / name / 'part-0.parquet'}' (FORMAT parquet)")
            (counts[name],) = db.execute(f"SELECT count(*) FROM ({query})").fetchall()[0]
    return counts


def evaluate(work: Path, model: Path, data: Path) -> dict[str, float]:
    result = last_json(run(["afm-eval", "--model", str(model), "--data", str(data),
                            "--format", "criteo"], work))
    return {k: v for k, v in result.items() if k not in ("rows", "oov")}


def shadow_trial(work: Path, url: str, day: Path, options: Options) -> dict[str, Any]:
    """Day 2's model as day 1's shadow on the first `shadow_rows` of `day`: the clicks the
    generator gives them joined, and the two models compared on the rows both scored."""
    admin(url, "POST", "/admin/shadow", {"model_dir": "day-2", "fraction": 1.0})
    served = send(url, day, options, options.shadow_rows)
    wait_logged(work / "impressions", set(served.ids))
    admin(url, "DELETE", "/admin/shadow")
    events = traffic.clicks(served.table(), timedelta(hours=1), options.seed + 1)
    traffic.write_events(events, work / "events-day-3.csv")
    joined = last_json(run(["afm-join", "--impressions", str(work / "impressions"),
                            "--events", str(work / "events-day-3.csv"), "--window", WINDOW,
                            "--out", str(work / "days" / "day-3-shadowed")], work))
    return {"requests_failed": served.failed, "impressions": len(served.ids),
            "clicks": events.num_rows, **(joined["shadow"] or {"rows": 0})}


def admin(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """An admin route's answer (raises on an error status)."""
    response = httpx.request(method, url + path, json=body, timeout=120,
                             headers={"Authorization": f"Bearer {TOKEN}"})
    response.raise_for_status()
    return response.json()


def reload(url: str, model: str) -> str:
    """POST /admin/reload; the version now served."""
    served = admin(url, "POST", "/admin/reload", {"model_dir": model})["model"]
    log.info("reloaded: %s", served)
    return str(served["version"])


def versions_logged(directory: Path, served: Served) -> dict[str, int]:
    """How the day-3 impressions were logged against the version that answered each."""
    table = logged(directory)
    by_id = dict(zip(table.column(im.IMPRESSION_ID).to_pylist(),
                     table.column(im.MODEL_VERSION).to_pylist(), strict=True))
    answered: dict[str, int] = {}
    for version in served.versions.values():
        answered[version] = answered.get(version, 0) + 1
    return {"answered_" + v: n for v, n in sorted(answered.items())} | {
        "missing": sum(1 for i in served.versions if i not in by_id),
        "other_version": sum(1 for i, v in served.versions.items() if by_id.get(i, v) != v),
    }


def loop(work: Path, options: Options) -> dict[str, Any]:
    began = time.perf_counter()
    days = generate(work, options)
    day1 = train(work, "day-1", "day-1", options, f"data.train={days['day-1']}",
                 f"data.validation={days['day-1-valid']}")
    figures: dict[str, Any] = {"rows_a_day": options.rows}
    with serving(work, options) as server:
        served = send(server.url, days["day-2"], options)
        wait_logged(work / "impressions", set(served.ids))
        events = traffic.clicks(served.table(), timedelta(hours=1), options.seed)
        traffic.write_events(events, work / "events-day-2.csv")
        figures["day_2"] = {"requests_failed": served.failed, "impressions": len(served.ids),
                            "clicks": events.num_rows}
        figures["join"] = last_json(run(["afm-join", "--impressions", str(work / "impressions"),
                                         "--events", str(work / "events-day-2.csv"), "--window",
                                         WINDOW, "--out", str(work / "days" / "day-2")], work))
        figures["split"] = split(work / "days" / "day-2", work / "days" / "day-2-split")
        day2 = train(work, "day-2", "day-2", options, "data.format=parquet",
                     f"data.train={work / 'days' / 'day-2-split' / 'train'}",
                     f"data.validation={work / 'days' / 'day-2-split' / 'valid'}",
                     f"train.init_from={day1}")
        figures["shadow"] = shadow_trial(work, server.url, days["day-3"], options)
        before = logged(work / "impressions").num_rows
        under_reload = send_around(server.url, days["day-3"], options, options.reload_rows,
                                   lambda: reload(server.url, "day-2"))
    figures["reload"] = {"requests_failed": under_reload.failed,
                         "impressions": len(under_reload.ids),
                         **versions_logged(work / "impressions", under_reload),
                         "logged_after_stop": logged(work / "impressions").num_rows - before}
    figures["day_3"] = {"day-1": evaluate(work, day1, days["day-3"]),
                        "day-2": evaluate(work, day2, days["day-3"]),
                        "bayes": _truth(days["day-3"])}
    figures["seconds"] = round(time.perf_counter() - began, 1)
    return figures


def _truth(path: Path) -> dict[str, float]:
    truth = json.loads(Path(f"{path}.truth.json").read_text())
    return {"auc": truth["bayes_auc"], "logloss": truth["bayes_logloss"]}


def markdown(figures: dict[str, Any]) -> str:
    day3 = figures["day_3"]
    lines = ["| model | day 3 AUC | day 3 logloss |", "|---|---:|---:|"]
    for name, label in (("day-1", "day 1 (the generator's world)"),
                        ("day-2", "day 2 (joined day, from day 1)"),
                        ("bayes", "the true probabilities")):
        lines.append(f"| {label} | {day3[name]['auc']:.4f} | {day3[name]['logloss']:.4f} |")
    join, reload_, shadow = figures["join"], figures["reload"], figures["shadow"]
    if shadow.get("live") and shadow.get("shadow"):
        lines += ["", "| on day 3's first rows, served (live: day 1; shadow: day 2) | AUC | logloss "
                  "| NE | calibration |", "|---|---:|---:|---:|---:|"]
        for name, label in (("live", "day 1, live"), ("shadow", "day 2, shadow")):
            m = shadow[name]
            lines.append(f"| {label} ({shadow['rows']:,} rows both scored) | {m['auc']:.4f} | "
                         f"{m['logloss']:.4f} | {m['ne']:.4f} | {m['calibration']:.3f} |")
    return "\n".join(lines) + (
        f"\n\nJoin: {join['impressions']:,} impressions, {join['events']:,} events, "
        f"{join['events_matched']:,} matched, {join['positives']:,} positives; reload under "
        f"traffic: {reload_['impressions']:,} impressions answered, "
        f"{reload_['requests_failed']} failed requests, {reload_['other_version']} logged under "
        f"another version than answered, {reload_['missing']} missing.\n")


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="bench.loop", description=__doc__.split("\n\n")[0])
    defaults = Options()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--work", type=Path, help="directory for everything (default: temporary)")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = parser.parse_args(argv)
    return Options(**{name: getattr(args, name) for name in vars(defaults)}), args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line a request otherwise
    options, args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="afm-loop-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        figures = loop(work.resolve(), options)
    print(json.dumps(figures))
    if args.markdown:
        print(markdown(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
