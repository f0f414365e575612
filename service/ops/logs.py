"""Logging: one JSON object per line (or plain text), request logs included.

Request lines go through `AccessLog`, not the logging module: rendered straight from the
request's fields and written in batches, they cost a request a tenth of what a log
record does (docs/BENCHMARKS.md). Every other line goes through `logging`.
"""

from __future__ import annotations

import asyncio
import logging
import select
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

ACCESS_LOGGER = "service.access"
# As nginx's buffered access_log: lines reach the log at most this late, a few writes for
# many lines; a graceful stop writes what is left, a crash may lose the last FLUSH_S of them.
FLUSH_S = 0.1
FLUSH_BYTES = 64 << 10
# Each write holds whole lines and at most this many bytes: a pipe (a container's stderr)
# takes such a write in one piece, so the lines of several workers never interleave.
WRITE_BYTES = select.PIPE_BUF
LogFormat = Literal["json", "text"]


class Stamps:
    """Timestamps of log lines; the part down to the second is computed once a second."""

    def __init__(self, utc: bool) -> None:
        self._utc = utc
        self._second = -1
        self._stamp = ""

    def __call__(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds (`utc`), else logging's local asctime."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = (datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                           if self._utc else time.strftime("%Y-%m-%d %H:%M:%S",
                                                           time.localtime(second)))
        millis = int((created - second) * 1000)
        return f"{self._stamp}.{millis:03d}Z" if self._utc else f"{self._stamp},{millis:03d}"


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.timestamp = Stamps(utc=True)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            data.update(request)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            text += " " + _pairs(request)
        return text


class AccessLog:
    """The request log: what a log record of ACCESS_LOGGER at level info would print with
    the service's formatters, one line per request, to stderr. Used from the event loop's
    thread only; lines wait at most `flush_s` (or `flush_bytes`) to be written together,
    in writes of whole lines of at most WRITE_BYTES (a longer line alone)."""

    def __init__(self, fmt: LogFormat, flush_s: float = FLUSH_S,
                 flush_bytes: int = FLUSH_BYTES) -> None:
        self._json = fmt == "json"
        self._stamp = Stamps(utc=self._json)
        self._flush_s = flush_s
        self._flush_bytes = flush_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def write(self, message: str, fields: dict[str, Any]) -> None:
        line = self._render(time.time(), message, fields)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self._flush_bytes:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self._flush_s, self.flush)
            except RuntimeError:  # no event loop: nothing would flush later
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        lines, self._lines, self._size = self._lines, [], 0
        stream = sys.stderr  # looked up now: tests capture it
        stream.flush()  # what logging wrote before goes first
        start, size = 0, 0
        for end, line in enumerate(lines):
            if size + len(line) > WRITE_BYTES and end > start:
                _write(stream, b"".join(lines[start:end]))
                start, size = end, 0
            size += len(line)
        _write(stream, b"".join(lines[start:]))

    def _render(self, created: float, message: str, fields: dict[str, Any]) -> bytes:
        if self._json:
            head = {"ts": self._stamp(created), "level": "info", "logger": ACCESS_LOGGER,
                    "message": message}
            return orjson.dumps({**head, **fields}, default=str, option=orjson.OPT_APPEND_NEWLINE)
        return f"{self._stamp(created)} INFO {ACCESS_LOGGER}: {message} {_pairs(fields)}\n".encode()


def _write(stream: Any, data: bytes) -> None:
    """One write of `data` to the stream's bytes (its text layer has been flushed)."""
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode())
        stream.flush()
    else:
        buffer.write(data)
        buffer.flush()


def _pairs(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def configure_logging(level: str, fmt: str) -> None:
    """Route the service's and uvicorn's logs through one stderr handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the service logs each request itself
