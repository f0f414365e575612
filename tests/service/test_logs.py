"""Request lines (`AccessLog`) read as log records of the service's formatters would."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from service.ops.logs import (
    ACCESS_LOGGER,
    WRITE_BYTES,
    AccessLog,
    JsonFormatter,
    LogFormat,
    TextFormatter,
)

FIELDS = {"request_id": "r-1", "method": "POST", "path": "/predict", "route": "/predict",
          "status": 200, "duration_ms": 0.25, "client": "127.0.0.1"}


def record(created: float) -> logging.LogRecord:
    made = logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 1, "%s %s %d",
                             ("POST", "/predict", 200), None)
    made.created, made.msecs = created, int((created - int(created)) * 1000) + 0.0
    made.request = FIELDS  # type: ignore[attr-defined]
    return made


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_request_line_is_what_a_log_record_would_print(
    fmt: LogFormat, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    created = 1_796_000_000.25
    monkeypatch.setattr("service.ops.logs.time.time", lambda: created)
    access = AccessLog(fmt)
    access.write("POST /predict 200", FIELDS)  # no event loop: written at once
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    expected = formatter.format(record(created))
    written = capsys.readouterr().err
    assert written == expected + "\n"
    if fmt == "json":
        assert list(json.loads(written)) == ["ts", "level", "logger", "message", *FIELDS]


def test_lines_are_written_together_after_a_while_or_a_size(
    capsys: pytest.CaptureFixture[str]
) -> None:
    async def serve(access: AccessLog) -> list[int]:
        seen = []
        for _ in range(3):
            access.write("GET /ping 200", {"status": 200})
            seen.append(capsys.readouterr().err.count("\n"))
        await asyncio.sleep(0.05)
        return [*seen, capsys.readouterr().err.count("\n")]

    assert asyncio.run(serve(AccessLog("json", flush_s=0.01))) == [0, 0, 0, 3]
    assert asyncio.run(serve(AccessLog("json", flush_bytes=1))) == [1, 1, 1, 0]


def test_each_write_holds_whole_lines_within_a_pipes_atomic_size(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    monkeypatch.setattr("service.ops.logs._write", lambda stream, data: writes.append(data))

    async def serve() -> None:
        access = AccessLog("json", flush_s=0.01)
        for n in range(60):
            access.write("GET /ping 200", {"request_id": f"{n:0100d}"})
        access.write("GET /long 200", {"request_id": "x" * 5000})
        await asyncio.sleep(0.05)

    asyncio.run(serve())
    lines = b"".join(writes).splitlines()
    assert len(lines) == 61 and len(writes) > 1
    assert all(w.endswith(b"\n") and (len(w) <= WRITE_BYTES or w.count(b"\n") == 1)
               for w in writes)
