"""Heap trims: once, shortly after requests that moved many bytes; never after small ones."""

from __future__ import annotations

import asyncio
import ctypes
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from service.app import create_app
from service.http.trim import HeapTrimmer, malloc_trim
from tests.helpers import INSTANCE, SettingsFactory

DELAY_S = 0.02
BLOCK = 64 * 1024
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def trimmer(min_bytes: int, calls: list[int],
            with_trim: bool = True) -> tuple[HeapTrimmer, CollectorRegistry]:
    registry = CollectorRegistry()
    trims = Counter("trims", "Heap trims.", registry=registry)
    trim = (lambda: calls.append(1)) if with_trim else None
    return HeapTrimmer(min_bytes, trim, trims, delay_s=DELAY_S), registry


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_malloc_trim_gives_freed_heap_memory_back_to_the_os() -> None:
    """32 MB freed in the middle of the heap (a block stays allocated above it) stays in
    the process until malloc_trim hands it back."""
    trim = malloc_trim()
    assert trim is not None
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)  # free() itself never trims (as under setup.sh)
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)  # the blocks come from the heap, not mmap
    blocks = [libc.malloc(BLOCK) for _ in range(512)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    above = libc.malloc(BLOCK)
    for block in blocks:
        libc.free(block)
    before = rss_kib()
    released = trim()
    after = rss_kib()
    libc.free(above)
    assert released == 1
    assert before - after > 16 * 1024, (before, after)


def test_a_large_request_trims_once_after_the_delay_however_many_follow() -> None:
    calls: list[int] = []
    heap, registry = trimmer(1000, calls)

    async def requests() -> None:
        heap.after_request(999)  # small: nothing
        await asyncio.sleep(2 * DELAY_S)
        assert calls == []
        for _ in range(5):
            heap.after_request(1000)
        assert calls == []  # not while the request's objects may still be alive
        await asyncio.sleep(2 * DELAY_S)
        assert calls == [1]
        heap.after_request(5000)  # a later large request: another trim
        await asyncio.sleep(2 * DELAY_S)

    asyncio.run(requests())
    assert calls == [1, 1] and registry.get_sample_value("trims_total") == 2


@pytest.mark.parametrize(("min_bytes", "with_trim"), [(0, True), (1000, False)])
def test_trimming_is_off_when_disabled_or_without_malloc_trim(min_bytes: int,
                                                              with_trim: bool) -> None:
    calls: list[int] = []
    heap, _ = trimmer(min_bytes, calls, with_trim)

    async def requests() -> None:
        heap.after_request(1 << 30)
        await asyncio.sleep(2 * DELAY_S)

    asyncio.run(requests())
    assert calls == []


def test_the_app_trims_after_a_large_answer_not_after_small_ones(
    make_settings: SettingsFactory,
) -> None:
    def trims(client: TestClient) -> float:
        time.sleep(0.5)  # past the trim delay
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("afm_heap_trims_total "):
                return float(line.split()[1])
        raise AssertionError("no afm_heap_trims_total")

    settings = make_settings(trim_after_bytes=64 << 10)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        for _ in range(20):
            assert client.post("/predict", json={"instances": [INSTANCE], "explain": True}).is_success
        assert trims(client) == 0  # /metrics answers are small too
        big = client.post("/predict", json={"instances": [INSTANCE] * 256, "explain": True})
        assert len(big.content) > 64 << 10
        assert trims(client) == 1
