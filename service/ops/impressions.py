"""The impression log's writer: every scored instance, off the request path.

A request hands over what it scored (`record`: references to its inputs and scores, a
time, its id) to a bounded in-memory queue and goes on; nothing is converted on the
request path. A writer thread drains the queue every DRAIN_INTERVAL_S, builds the Arrow
rows (`impression_rows`) and writes them (`impression_files`: hour partitions, rolls,
atomic files). When the queue holds `capacity` instances, a request's instances are not
logged and are counted (`afm_impressions_dropped_total{reason="queue_full"}`): the log
never slows a request past an append nor fails one. `close` (a graceful stop) writes what
is queued and closes the open file; a crash loses at most the open file, never a closed
one. Requests are sampled whole, by their id, so retries and every worker agree.

With a shadow model, a record may carry a `ShadowSlot` the shadow fills once it has scored
that request: the writer writes records in order, each once its slot is settled or, at the
latest, `shadow_wait_s` after it was scored (then with null shadow columns). A waiting
record holds back the ones behind it, never the request path; the queue's bound still holds.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from model.bundle import Bundle, Scores
from model.features import Encoded
from model.impressions import impression_ids
from service.ops.impression_files import LogFiles
from service.ops.impression_rows import ImpressionRows, Scored
from service.ops.metrics import ImpressionMetrics
from service.ops.settings import Settings
from service.ops.shadow_slot import ShadowSlot

DRAIN_INTERVAL_S = 0.2
CLOSE_TIMEOUT_S = 60.0
STOP_POLL_S = 0.02
_SAMPLE_SPACE = 1 << 32  # crc32 values
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9.-]")
log = logging.getLogger("service.impressions")


def worker_name() -> str:
    """Unique among the processes writing one log: host, process id and a random part (a
    restarted container reuses its host name and often its process ids)."""
    host = _NOT_IN_NAMES.sub("-", socket.gethostname()).strip(".-") or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ImpressionLog:
    def __init__(self, directory: Path, metrics: ImpressionMetrics, *, sample: float = 1.0,
                 capacity: int = 1 << 16, roll_seconds: float = 300.0,
                 roll_bytes: int = 128 << 20, shadow_wait_s: float = 1.0,
                 worker: str | None = None) -> None:
        self._metrics = metrics
        self._files = LogFiles(directory, worker or worker_name(), roll_seconds, roll_bytes,
                               metrics)
        self._rows = ImpressionRows()
        self._threshold = round(sample * _SAMPLE_SPACE)
        self._capacity = capacity
        self._shadow_wait_s = shadow_wait_s
        self._queue: deque[Scored] = deque()
        self._lock = threading.Lock()
        self._pending = 0  # instances queued or being written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @classmethod
    def of(cls, settings: Settings, metrics: ImpressionMetrics) -> ImpressionLog:
        """The log the AFM_IMPRESSION_* settings describe (AFM_IMPRESSION_LOG_DIR set)."""
        assert settings.impression_log_dir is not None
        return cls(settings.impression_log_dir, metrics, sample=settings.impression_sample,
                   capacity=settings.impression_queue_instances,
                   roll_seconds=settings.impression_roll_seconds,
                   roll_bytes=settings.impression_roll_bytes,
                   shadow_wait_s=settings.impression_shadow_wait_s)

    def start(self) -> None:
        # Arrow's default allocator (mimalloc) hands the pages of every batch the writer
        # frees back to the OS at once, in system calls that cost a logging server more CPU
        # than building and writing its rows; glibc's malloc keeps them for the next batch
        # (docs/BENCHMARKS.md, "The impression log"). Only this log uses Arrow in a worker.
        pa.set_memory_pool(pa.system_memory_pool())
        self._thread = threading.Thread(target=self._run, name="afm-impressions", daemon=True)
        self._thread.start()

    def record(self, bundle: Bundle, scores: Scores, inputs: Sequence[Mapping[str, Any]] | Encoded,
               encoded: Encoded, request_id: str, route: str,
               shadow: ShadowSlot | None = None) -> list[str] | None:
        """Queue a request's scored instances (field values and their encoding, or tensors:
        `inputs is encoded`), with the slot its shadow scores will fill if it was offered to
        a shadow model; their impression ids, or None when they are not logged (not
        sampled, the queue full, or the log closed)."""
        if self._threshold < _SAMPLE_SPACE and zlib.crc32(request_id.encode()) >= self._threshold:
            return None
        rows = len(scores.score)
        with self._lock:
            room = self._thread is not None and self._pending + rows <= self._capacity
            if room:
                self._pending += rows
        if not room:
            self._metrics.dropped.labels("queue_full").inc(rows)
            return None
        ids = impression_ids(request_id, rows)
        self._queue.append(Scored(time.time_ns() // 1000, request_id, route, bundle, scores,
                                  inputs, encoded, encoded.oov, ids, shadow))
        return ids

    def shadow_slot(self) -> ShadowSlot:
        """A slot for the shadow scores of a request scored now, waited for until the bound."""
        return ShadowSlot(time.monotonic() + self._shadow_wait_s)

    def close(self) -> None:
        """Write everything queued, close the open file and stop the writer (a graceful stop)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(CLOSE_TIMEOUT_S)
        if thread.is_alive():
            log.error("the impression log's writer did not finish within %.0f s", CLOSE_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(DRAIN_INTERVAL_S)
            self._drain()
            self._guarded(self._files.tick)
            if stopping and not self._queue:
                break
            if stopping:  # records wait for their shadow scores (bounded): poll, not spin
                time.sleep(STOP_POLL_S)
        self._guarded(self._files.close)

    def _drain(self) -> None:
        records = []
        now = time.monotonic()
        while self._queue:
            shadow = self._queue[0].shadow
            if shadow is not None and not shadow.ready(now):
                break  # the next drain takes it: filled, given up or past its deadline
            records.append(self._queue.popleft())
        if not records:
            return
        rows = sum(record.rows for record in records)
        accepted = self._files.accepted
        try:
            for key, table in self._rows.tables(records):
                self._files.write(key, table)
            self._failing = False
        except Exception:
            lost = self._files.abort() + rows - (self._files.accepted - accepted)
            self._failed(lost)
        finally:
            with self._lock:
                self._pending -= rows

    def _guarded(self, step: Any) -> None:
        try:
            step()
        except Exception:
            self._failed(self._files.abort())

    def _failed(self, lost: int) -> None:
        """A file could not be written: its rows are dropped and counted, the next file is
        tried afresh; the error is logged once until a write succeeds again."""
        self._metrics.dropped.labels("error").inc(lost)
        if not self._failing:
            log.exception("impression log: %d instances could not be written", lost)
        self._failing = True
