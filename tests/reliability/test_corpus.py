"""Every crafted bad request gets its exact 4xx and a short JSON error naming the problem,
from the real server process, which stays up with its memory back near its baseline."""

from __future__ import annotations

import select
import socket
import time
from collections import Counter
from collections.abc import Iterable

import httpx
import pytest

from tests.reliability.conftest import Server, knob, report, rss_kib
from tests.reliability.corpus import CORPUS, ODD_BUT_VALID, Case
from tests.service.conftest import INSTANCE

pytestmark = pytest.mark.slow
MAX_ERROR_CHARS = 2048
SEND_CHUNK = 64 * 1024
# Memory may settle a little above the warmed-up baseline (allocator arenas, caches);
# a leak of what the corpus sends (hundreds of MB a pass) would be far over this.
RSS_SLACK = 1.10


def send(server: Server, case: Case) -> tuple[int, bytes]:
    if case.raw is not None:
        return send_raw(server.port, case)
    body = case.payload()
    with httpx.Client(timeout=30) as client:
        response = client.request(case.method, server.url + case.path, content=body,
                                  headers=case.headers)
    return response.status_code, response.content


def send_raw(port: int, case: Case) -> tuple[int, bytes]:
    """Send what no well-behaved client would; large ones only until the server answers."""
    body = case.payload() or b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if case.raw == "stream":  # the body is the whole request
            sent = send_until_answered(sock, chunks(body))
            assert sent < len(body), "the server read the whole request before answering"
            return parse_response(read_all(sock))
        framing = ("transfer-encoding: chunked" if case.raw == "chunked"
                   else f"content-length: {len(body)}")
        extra = "".join(f"{k}: {v}\r\n" for k, v in case.headers.items() if k != "content-type")
        sock.sendall((f"{case.method} {case.path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{extra}"
                      f"content-type: application/json\r\n{framing}\r\n\r\n").encode())
        if case.raw == "plain":
            sock.sendall(body)
            return parse_response(read_all(sock))
        if case.raw == "length":
            sent = send_until_answered(sock, [body[:SEND_CHUNK]])
        else:
            sent = send_until_answered(sock, (b"%x\r\n%s\r\n" % (len(c), c) for c in chunks(body)))
        assert sent < len(body), "the server read the whole body before answering"
        return parse_response(read_all(sock))


def chunks(data: bytes) -> Iterable[bytes]:
    return (data[i:i + SEND_CHUNK] for i in range(0, len(data), SEND_CHUNK))


def send_until_answered(sock: socket.socket, frames: Iterable[bytes]) -> int:
    """Send frames until the server answers (or closes); the bytes sent."""
    sent = 0
    for frame in frames:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(frame)
    return sent


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not _complete(data):
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def parse_response(data: bytes) -> tuple[int, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def check(server: Server, case: Case, status: int, body: bytes) -> None:
    assert status == case.status, (case.id, body[:300])
    assert len(body) <= MAX_ERROR_CHARS, (case.id, len(body))
    error = httpx.Response(status, content=body).json()["error"]
    assert isinstance(error, str) and case.phrase in error, (case.id, error)
    assert "Traceback" not in error and str(server.root) not in error and "/tmp" not in error


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_bad_request_gets_its_exact_4xx(server: Server, case: Case) -> None:
    status, body = send(server, case)
    check(server, case, status, body)


@pytest.mark.parametrize(("name", "value"), ODD_BUT_VALID, ids=[n for n, _ in ODD_BUT_VALID])
def test_odd_but_valid_unicode_is_answered_and_echoed_intact(server: Server, name: str,
                                                             value: str) -> None:
    with httpx.Client(timeout=10) as client:
        response = client.post(server.url + "/predict", json={"instances": [{"f0": value}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["oov"] == [{"field": "f0", "value": value}]


def test_the_corpus_leaves_the_server_up_and_its_memory_near_baseline(server: Server) -> None:
    passes = int(knob("CORPUS_PASSES", 2))
    baseline = rss_kib(server.pid)
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    for _ in range(passes):
        for case in CORPUS:
            status, body = send(server, case)
            check(server, case, status, body)
            statuses[status] += 1
    time.sleep(0.5)
    after = rss_kib(server.pid)
    assert server.alive()
    with httpx.Client(timeout=10) as client:  # and it still answers good requests
        assert client.post(server.url + "/predict", json={"instances": [INSTANCE]}).is_success
    report("corpus", {
        "cases": len(CORPUS), "passes": passes, "requests": sum(statuses.values()),
        "by_kind": dict(Counter(case.kind for case in CORPUS)),
        "by_status": {str(k): v for k, v in sorted(statuses.items())},
        "rss_before_kib": baseline, "rss_after_kib": after,
        "seconds": round(time.monotonic() - started, 1),
    })
    assert after <= baseline * RSS_SLACK, (baseline, after)
