"""Every Prometheus metric of the service, registered on the registry the app is given.

With more than one worker process, prometheus_client's multiprocess mode is used: each
worker writes its values to memory-mapped files in PROMETHEUS_MULTIPROC_DIR and a scrape,
whichever worker answers it, reads and sums the files of all workers.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from model.manifest import Manifest

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
SCORE_BUCKETS = (-10.0, -5.0, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
DIFFERENCE_BUCKETS = (-1.0, -0.5, -0.25, -0.1, -0.05, -0.01, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
PROCESS_REFRESH_S = 5.0
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "afm_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=registry,
        )
        self.request_seconds = Histogram(
            "afm_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            "afm_requests_in_flight", "HTTP requests being served.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.run_seconds = Histogram(
            "afm_model_run_duration_seconds", "Latency of one onnxruntime run.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.batch_size = Histogram(
            "afm_batch_size", "Instances per onnxruntime run.",
            buckets=BATCH_BUCKETS, registry=registry,
        )
        self.instances = Counter(
            "afm_instances_scored", "Instances scored.", registry=registry
        )
        self.oov = Counter(
            "afm_oov_values", "Values out of vocabulary, by field.", ["field"], registry=registry
        )
        self.scores = Histogram(
            "afm_predicted_score", "Raw model scores (logits for binary tasks), to watch drift.",
            buckets=SCORE_BUCKETS, registry=registry,
        )
        self.model_info = Gauge(
            "afm_model_info", "The model being served (1) and models served before (0).",
            ["name", "version", "sha256"], registry=registry, multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "afm_reloads", "Model reloads by outcome.", ["outcome"], registry=registry
        )
        self.heap_trims = Counter(
            "afm_heap_trims", "Times freed heap went back to the OS after a large request body.",
            registry=registry,
        )
        self.grpc_requests = Counter(
            "afm_grpc_requests", "gRPC requests by method and status code.",
            ["method", "code"], registry=registry,
        )
        self.grpc_seconds = Histogram(
            "afm_grpc_request_duration_seconds", "gRPC request latency by method.",
            ["method"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.shadow = ShadowMetrics(registry)
        self.drift = DriftCollector()
        self.impressions = ImpressionMetrics(registry)
        self.process = ProcessMetrics(registry, multiprocess_dir() is not None)
        # A collector computes at scrape time; in multiprocess mode the scrape reads the
        # workers' files into a new registry, which gets the collector then (`exposition`).
        self.scrape_collectors: list[Collector] = [self.drift]
        if multiprocess_dir() is None:
            registry.register(self.drift)
            self.scrape_collectors = []

    def observe_run(self, seconds: float, rows: int) -> None:
        observe(self.run_seconds, seconds)
        observe(self.batch_size, rows)

    def observe_scored(self, scores: np.ndarray, oov: Iterable[tuple[int, str, str]]) -> None:
        add(self.instances, len(scores))
        observe_many(self.scores, scores)
        for _, name, _ in oov:
            self.oov.labels(name).inc()

    def serving(self, manifest: Manifest, before: Manifest | None) -> None:
        if before is not None:
            self.model_info.labels(before.name, before.version, before.digest).set(0)
        self.model_info.labels(manifest.name, manifest.version, manifest.digest).set(1)


class ShadowMetrics:
    """A candidate model scored beside the live one (`service.core.shadow`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.info = Gauge(
            "afm_shadow_info", "The shadow (candidate) model being scored beside the live one (1).",
            ["name", "version", "sha256"], registry=registry, multiprocess_mode="livemax",
        )
        self.fraction = Gauge(
            "afm_shadow_fraction", "Share of live requests also scored by the shadow model.",
            registry=registry, multiprocess_mode="livemax",
        )
        self.requests = Counter(
            "afm_shadow_requests", "Live requests offered to the shadow model, by outcome: "
            "scored, dropped (its queue full), skipped (not scorable by it), failed.",
            ["outcome"], registry=registry,
        )
        self.instances = Counter(
            "afm_shadow_instances_scored", "Instances the shadow model scored.", registry=registry,
        )
        self.run_seconds = Histogram(
            "afm_shadow_run_duration_seconds", "Latency of one onnxruntime run of the shadow model.",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.difference = Histogram(
            "afm_shadow_score_difference", "Shadow score minus live score, per instance.",
            buckets=DIFFERENCE_BUCKETS, registry=registry,
        )
        self.disagreements = Counter(
            "afm_shadow_disagreements", "Instances whose shadow prediction differs from the "
            "live one by more than AFM_SHADOW_THRESHOLD.", registry=registry,
        )
        self.rank_pairs = Counter(
            "afm_shadow_rank_pairs", "Pairs of recent instances that the two models order the "
            "same way (concordant) or the other way (discordant).", ["order"], registry=registry,
        )


@dataclass(frozen=True)
class DriftReport:
    """Drift statistics over the window, ready to export (`service.core.monitor` makes them)."""

    instances: int
    fields: list[str]
    psi: list[float] | None  # per field; None: too few instances in the window
    score_psi: float | None
    oov_online: dict[str, float]
    oov_reference: dict[str, float]
    pairs: list[str]  # empty when the bundle has no pair importance
    pair_reference: list[float]  # mean |contribution| on the validation rows
    pair_online: list[float]  # NaN: too few instances held the pair
    pair_ratio: list[float]  # NaN: an immaterial pair, or no online value


class DriftCollector(Collector):
    """Renders the drift report of the model being served at each scrape."""

    def __init__(self) -> None:
        self.source: Callable[[], DriftReport | None] = lambda: None

    def describe(self) -> list[Metric]:
        return []  # computed at scrape; nothing to register ahead

    def collect(self) -> Iterator[Metric]:
        report = self.source()
        if report is None:
            return
        yield _gauge("afm_drift_window_instances", "Instances in the drift window.", [],
                     [([], report.instances)])
        if report.psi is not None:
            yield _gauge("afm_drift_psi", "Population stability index of each field over the "
                         "window against its training reference.", ["field"],
                         [([f], v) for f, v in zip(report.fields, report.psi, strict=True)])
        if report.score_psi is not None:
            yield _gauge("afm_drift_score_psi", "Population stability index of the score over "
                         "the window against its training reference.", [], [([], report.score_psi)])
        oov = [([f, "reference"], v) for f, v in report.oov_reference.items()]
        oov += [([f, "online"], v) for f, v in report.oov_online.items()]
        yield _gauge("afm_drift_oov_share", "Share of a field's values out of vocabulary, "
                     "online (the window) and on the validation rows.", ["field", "source"], oov)
        pairs = [([p, "reference"], v) for p, v in zip(report.pairs, report.pair_reference, strict=True)]
        pairs += [([p, "online"], v) for p, v in zip(report.pairs, report.pair_online, strict=False)]
        yield _gauge("afm_pair_contribution", "Mean |contribution| of a field pair over the "
                     "instances holding it, online (the window) and on the validation rows.",
                     ["pair", "source"], pairs)
        yield _gauge("afm_pair_contribution_ratio", "Online mean |contribution| of a field pair "
                     "over its reference, for pairs carrying at least 1% of the reference total.",
                     ["pair"], [([p], v) for p, v in zip(report.pairs, report.pair_ratio, strict=False)])


def _gauge(name: str, documentation: str, labels: list[str],
           values: Iterable[tuple[list[str], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        if not math.isnan(value):
            family.add_metric(label_values, value)
    return family


class ImpressionMetrics:
    """The impression log's counters (service.ops.impressions), by instances."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.logged = Counter(
            "afm_impressions_logged", "Instances written to the impression log.", registry=registry
        )
        self.dropped = Counter(
            "afm_impressions_dropped",
            "Instances scored but not logged: queue_full (the writer was behind), error (a "
            "file could not be written).", ["reason"], registry=registry,
        )
        self.files = Counter(
            "afm_impression_files", "Impression log files closed (complete and readable).",
            registry=registry,
        )


class ProcessMetrics:
    """`process_*` metrics (CPU, memory, open files, start time) of this process.

    One process: prometheus_client's ProcessCollector on the registry. Several workers:
    custom collectors do not work in multiprocess mode (prometheus_client's documentation),
    so each worker copies ProcessCollector's readings into gauges in "liveall" mode, which
    export one series per live worker labelled `pid`; `refresh` runs in each worker
    periodically and in the worker answering a scrape.
    """

    def __init__(self, registry: CollectorRegistry, multiprocess_mode: bool) -> None:
        self._reader = ProcessCollector(registry=None if multiprocess_mode else registry)
        self._gauges: dict[str, Gauge] = {}
        if multiprocess_mode:
            for family in self._reader.collect():
                for sample in family.samples:
                    self._gauges[sample.name] = Gauge(
                        sample.name, f"{family.documentation} (this worker)",
                        registry=registry, multiprocess_mode="liveall",
                    )
            self.refresh()

    def refresh(self) -> None:
        if not self._gauges:
            return
        for family in self._reader.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is not None:
                    gauge.set(sample.value)


async def refresh_process_metrics(process: ProcessMetrics) -> None:
    """Run forever in each worker (multiprocess mode): keep its process_* series current."""
    while True:
        await asyncio.sleep(PROCESS_REFRESH_S)
        process.refresh()


# The request path's metrics: prometheus_client's own observe walks the buckets in Python
# and each of its calls checks labels and exemplars, several times a request. These rely
# on its layout (`_value`, per-bucket counts in `_buckets`, `_sum`), which
# tests/service/test_metrics.py checks against its own methods.
def observe(histogram: Histogram, value: float) -> None:
    """`histogram.observe(value)` for a finite value (a bisection finds its bucket)."""
    histogram._sum.inc(value)  # type: ignore[attr-defined]
    histogram._buckets[bisect_left(histogram._upper_bounds, value)].inc(1)  # type: ignore[attr-defined]


def add(metric: Counter | Gauge, amount: float) -> None:
    """`metric.inc(amount)` of a counter (amount >= 0) or gauge without labels to check."""
    metric._value.inc(amount)  # type: ignore[union-attr]


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Observe a batch of finite values at the cost of a few increments, not one each."""
    if len(values) <= 4:
        for value in values.tolist():
            observe(histogram, value)
        return
    bounds: Sequence[float] = histogram._upper_bounds  # type: ignore[attr-defined]
    # observe() puts v in the first bucket with v <= bound, i.e. searchsorted side="left".
    slots = np.searchsorted(np.asarray(bounds[:-1]), values, side="left")
    counts = np.bincount(slots, minlength=len(bounds))
    histogram._sum.inc(float(values.sum()))  # type: ignore[attr-defined]
    for slot in np.flatnonzero(counts).tolist():
        histogram._buckets[slot].inc(int(counts[slot]))  # type: ignore[attr-defined]


def multiprocess_dir() -> Path | None:
    """The multiprocess directory if this process runs in multiprocess mode (read at start-up)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reap_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that died without cleaning up (e.g. SIGKILL)."""
    for path in directory.glob("gauge_live*_*.db"):
        match = _LIVE_GAUGE_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            multiprocess.mark_process_dead(int(match.group(1)), str(directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exposition(registry: CollectorRegistry, directory: Path | None,
               collectors: Sequence[Collector] = ()) -> bytes:
    """The text format for a scrape: this registry, or the sum of every worker's files and
    what `collectors` compute now."""
    if directory is None:
        return generate_latest(registry)
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, str(directory))
    for collector in collectors:
        merged.register(collector)
    return generate_latest(merged)
