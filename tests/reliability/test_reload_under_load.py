"""Reload under load, on the real process: while wrk drives /predict, 20 reloads alternate
two valid bundles with broken ones. No request fails; every answer names a version that
was serving while it ran; each broken bundle is refused with its reason and the previous
model keeps serving."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bench import harness
from tests.helpers import INSTANCE, TOKEN
from tests.helpers.bundles import BROKEN, copy_bundle
from tests.helpers.servers import Server, knob, report, require_wrk

pytestmark = pytest.mark.slow
RELOADS = int(knob("RELOADS", 20))
PAUSE_S = knob("RELOAD_PAUSE_S", 0.4)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KINDS = ["truncated onnx", "sha256 mismatch", "manifest without a key",
         "fields disagree with the onnx", "unknown format version"]


@dataclass(frozen=True)
class Reload:
    start: float
    end: float
    name: str
    status: int
    error: str
    before: str
    after: str


@dataclass(frozen=True)
class Probe:
    start: float
    end: float
    status: int
    version: str


def plan() -> list[str]:
    """v2, broken, v1, broken, ...: every other reload a broken kind, in turn."""
    names = []
    for i in range(RELOADS):
        names.append(("v2" if i % 4 == 0 else "v1") if i % 2 == 0 else f"broken-{i // 2 % len(KINDS)}")
    return names


def make_broken(root: Path, bundle: Path) -> None:
    for i, kind in enumerate(KINDS):
        broken = copy_bundle(bundle, root / f"broken-{i}", version=f"broken{i}")
        BROKEN[kind][0](broken)


def probe(url: str, stop: threading.Event, out: list[Probe]) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            start = time.monotonic()
            response = client.post(url + "/predict", json={"instances": [INSTANCE]})
            version = response.json()["model"]["version"] if response.is_success else ""
            out.append(Probe(start, time.monotonic(), response.status_code, version))


def serving(reloads: list[Reload], probe: Probe) -> set[str]:
    """Versions that served at some instant of the probe: the one before it started, and
    both sides of any reload whose window overlaps it."""
    valid = {"1"}
    for reload in reloads:
        if reload.end < probe.start:
            valid = {reload.after}
    for reload in reloads:
        if reload.start <= probe.end and reload.end >= probe.start:
            valid |= {reload.before, reload.after}
    return valid


def reload(client: httpx.Client, url: str, name: str, current: str) -> Reload:
    start = time.monotonic()
    response = client.post(url + "/admin/reload", json={"model_dir": name}, headers=AUTH)
    end = time.monotonic()
    body = response.json()
    after = body["model"]["version"] if response.is_success else current
    return Reload(start, end, name, response.status_code, body.get("error", ""), current, after)


def test_reloads_under_load_lose_nothing(server: Server, bundle_dir: Path) -> None:
    require_wrk()
    make_broken(server.root, bundle_dir)
    names = plan()
    load_s = 4 + RELOADS * (PAUSE_S + 0.3)
    load = harness.start_wrk(server.url + "/predict", load_s)
    stop, probes = threading.Event(), list[Probe]()
    prober = threading.Thread(target=probe, args=(server.url, stop, probes), daemon=True)
    reloads: list[Reload] = []
    try:
        time.sleep(1.5)  # wrk is connected and driving
        prober.start()
        current = "1"
        with httpx.Client(timeout=60) as client:
            for name in names:
                done = reload(client, server.url, name, current)
                reloads.append(done)
                current = done.after
                time.sleep(PAUSE_S)
    finally:
        stop.set()
        prober.join(timeout=15)
        result = harness.finish_wrk(load, timeout=load_s + 60)

    refused = [r for r in reloads if r.name.startswith("broken")]
    report("reload_under_load", {
        **result.figures(), "reloads": len(reloads),
        "reloads_done": sum(r.status == 200 for r in reloads),
        "reloads_refused": sum(r.status == 422 for r in reloads),
        "versions_answered": result.versions, "probes": len(probes),
        "refusals": sorted({r.error.split(": ", 1)[1][:80] for r in refused}),
    })
    assert result.non_2xx == 0 and result.socket_errors == 0, result
    assert set(result.versions) <= {"1", "2"}, result.versions
    assert len(set(result.versions)) == 2  # the load really spanned reloads
    for r in reloads:
        if r.name.startswith("broken"):
            assert r.status == 422, r
            assert r.error.startswith(f"reload refused, still serving version {r.before}: "), r
            assert r.after == r.before
            kind = KINDS[int(r.name.split("-")[1])]
            assert BROKEN[kind][1] in r.error, (kind, r.error)
        else:
            assert r.status == 200 and r.after == r.name.removeprefix("v"), r
    assert probes and all(p.status == 200 for p in probes)
    wrong = [p for p in probes if p.version not in serving(reloads, p)]
    assert not wrong, wrong[:5]
    assert server.alive()
