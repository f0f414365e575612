"""Bundles with large tables: build one with random weights for given table rows (no
training), then serve it: start to ready, memory per worker (Pss and Private from
/proc/PID/smaps_rollup), and reloads under a wrk load.

    python -m bench.bigbundle build --rows 14000000 --out runs/big-14M [--format 2]
    python -m bench.bigbundle serve runs/big-14M --workers 1 4 --reloads 4

`build` writes the 26 categorical fields of the Criteo Kaggle log with Criteo-like
cardinalities scaled to `--rows` (8-hex-digit values) and the criteo-afm model's sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench import harness

FIELDS = 26
TOKEN = "bench-bigbundle-token"
# Criteo Kaggle's categorical cardinalities after min_count (the shape of the table, in
# shares): a few fields hold most values.
SHARES = np.array([1460, 583, 305_000, 124_000, 305, 24, 12_517, 633, 3, 93_145, 5683,
                   286_000, 3194, 27, 14_992, 210_000, 10, 5652, 2173, 4, 250_000, 18, 15,
                   105_000, 105, 142_572], dtype=np.float64)


def cardinalities(rows: int) -> list[int]:
    sizes = np.maximum(np.round(SHARES / SHARES.sum() * rows), 2).astype(int)
    sizes[int(np.argmax(sizes))] += rows - int(sizes.sum())
    return [int(s) for s in sizes]


def build(rows: int, out: Path, format_version: int, table_dtype: str) -> None:
    import torch

    from model.afm import ModelConfig, build_model
    from model.features import FeatureSpace, FieldKind, FieldSpec
    from training.data import Dataset
    from training.export import Serving, write_bundle
    from training.shards import write_dataset

    space = FeatureSpace([
        FieldSpec.model_construct(name=f"C{i + 1}", kind=FieldKind.CATEGORICAL,
                                  vocabulary=[f"{(i << 24) + k:08x}" for k in range(size)])
        for i, size in enumerate(cardinalities(rows))])
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind="afm", num_features=space.num_features,
                                    num_fields=FIELDS, embed_dim=16, attention_dim=16))
    encoded = space.encode([{} for _ in range(4)])
    with tempfile.TemporaryDirectory() as scratch:
        validation = write_dataset(Path(scratch), Dataset(
            encoded.indices, encoded.weights, np.zeros(4, dtype=np.float32)))
        write_bundle(out, model, space, name="big", version="1",
                     serving=Serving("binary", (0.0, 1.0)), validation=validation,
                     training={}, data={}, metrics={}, format_version=format_version,  # type: ignore[arg-type]
                     table_dtype=table_dtype)  # type: ignore[arg-type]
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"rows": space.num_features, "format": format_version,
                      "bytes": size, "files": {p.name: p.stat().st_size for p in out.iterdir()}}))


def memory(pid: int) -> dict[str, int]:
    """MiB of Rss, Pss, private pages and anonymous pages (the heap: never shared) of one
    process (smaps_rollup)."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Anonymous"):
            figures[key] = int(value.split()[0]) // 1024
    figures["Private"] = figures.pop("Private_Clean") + figures.pop("Private_Dirty")
    return figures


def workers(server: harness.ServerProcess) -> list[int]:
    """The worker processes: the server's group, less the supervisor (when there is one)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == server.pid and int(stat.parent.name) != server.pid:
            pids.append(int(stat.parent.name))
    return pids or [server.pid]


def post(url: str, path: str, body: dict[str, object]) -> tuple[int, float]:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {TOKEN}"})
    start = time.monotonic()
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, time.monotonic() - start


def serve(bundle: Path, count: int, reloads: int, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory(dir=bundle.parent) as root:
        for name in ("v1", "v2"):  # two names for one bundle (hard links): a reload loads it anew
            (Path(root) / name).mkdir()
            for path in bundle.iterdir():
                os.link(path, Path(root) / name / path.name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AFM_", "MALLOC_"))}
        env.update(AFM_MODELS_ROOT=root, AFM_ADMIN_TOKEN=TOKEN, AFM_LOG_LEVEL="warning")
        start = time.monotonic()
        with harness.ServerProcess(["--model-dir", str(Path(root) / "v1"), "--workers",
                                    str(count)], env) as server:
            server.wait_ready(300)
            ready_s = time.monotonic() - start
            time.sleep(2)  # every worker up (readyz answers from the first)
            figures: dict[str, object] = {"workers": count, "ready_s": round(ready_s, 2),
                                          "memory_mib": [memory(p) for p in workers(server)]}
            figures.update(reload_under_load(server, bundle, reloads, seconds))
    return figures


def reload_under_load(server: harness.ServerProcess, bundle: Path, reloads: int,
                      seconds: float) -> dict[str, object]:
    if not reloads:
        return {}
    from bench.scenarios import instance
    from model.manifest import Manifest

    fields = Manifest.read(bundle).fields
    body = json.dumps({"instances": [instance(fields, np.random.default_rng(0))]}).encode()
    load = harness.start_wrk(server.url + "/predict", seconds, connections=8, threads=1,
                             request=harness.Request("POST", "/predict", body))
    times = []
    for i in range(reloads):
        time.sleep(seconds / (reloads + 1))
        status, took = post(server.url, "/admin/reload", {"model_dir": f"v{2 - i % 2}"})
        assert status == 200, status
        times.append(round(took, 2))
    result = harness.finish_wrk(load, seconds + harness.WRK_TIMEOUT_MARGIN_S)
    return {"reload_s": times, "requests": result.requests, "failed": result.errors,
            "p99_ms": result.p99_ms, "max_ms": result.max_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bigbundle", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--rows", type=int, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--format", type=int, choices=(2, 3), default=3)
    b.add_argument("--table-dtype", choices=("float32", "float16"), default="float32")
    s = sub.add_parser("serve")
    s.add_argument("bundle", type=Path)
    s.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    s.add_argument("--reloads", type=int, default=4)
    s.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command == "build":
        shutil.rmtree(args.out, ignore_errors=True)
        build(args.rows, args.out, args.format, args.table_dtype)
        return 0
    for count in args.workers:
        print(json.dumps(serve(args.bundle, count, args.reloads, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
