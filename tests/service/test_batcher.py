"""The micro-batcher: coalescing, flushing, shutdown, one model per request."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from model.bundle import Bundle, Scores
from model.manifest import OUTPUT_NAMES
from service.core.batcher import Batcher
from tests.helpers.bundles import copy_bundle


class Counting:
    """The run function, recording the size and bundle of every onnxruntime run."""

    def __init__(self, fail: bool = False) -> None:
        self.runs: list[tuple[Bundle, int]] = []
        self.fail = fail

    def __call__(self, bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> Scores:
        self.runs.append((bundle, len(indices)))
        if self.fail:
            raise RuntimeError("onnxruntime failed")
        return bundle.run(indices, weights)


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


def rows(bundle: Bundle, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    space = bundle.features
    instances = [{name: f"v{rng.integers(0, 30)}" for name in space.field_names}
                 for _ in range(count)]
    encoded = space.encode(instances)
    return encoded.indices, encoded.weights


def test_concurrent_requests_share_one_run_with_the_same_results(bundle: Bundle) -> None:
    """The first request of a loop turn runs at once; the others of that turn share a run."""
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=0.02)
    requests = [rows(bundle, 1 + i % 3, seed=i) for i in range(8)]

    async def scenario() -> list[Scores]:
        return await asyncio.gather(*(batcher.run(bundle, i, w) for i, w in requests))

    results = asyncio.run(scenario())
    assert [size for _, size in run.runs] == [len(requests[0][0]),
                                              sum(len(i) for i, _ in requests[1:])]
    for (indices, weights), got in zip(requests, results, strict=True):
        alone = bundle.run(indices, weights)
        for name in OUTPUT_NAMES:
            np.testing.assert_allclose(getattr(got, name), getattr(alone, name), atol=1e-6)


def test_a_lone_request_runs_at_once_and_so_does_the_next_turns(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=30.0)

    async def scenario() -> None:
        for seed in range(3):
            await asyncio.wait_for(batcher.run(bundle, *rows(bundle, 2, seed=seed)), timeout=5)
            await asyncio.sleep(0)

    asyncio.run(scenario())
    assert [size for _, size in run.runs] == [2, 2, 2]


def test_a_full_batch_runs_without_waiting_for_the_timer(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=4, max_wait_s=30.0)

    async def scenario() -> None:
        work = [batcher.run(bundle, *rows(bundle, 1, seed=i)) for i in range(5)]
        await asyncio.wait_for(asyncio.gather(*work), timeout=5)

    asyncio.run(scenario())
    assert [size for _, size in run.runs] == [1, 4]  # the first at once, then a full batch


def test_a_request_as_large_as_a_batch_runs_alone_at_once(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=8, max_wait_s=30.0)
    asyncio.run(asyncio.wait_for(batcher.run(bundle, *rows(bundle, 20)), timeout=5))
    assert [size for _, size in run.runs] == [20]


def test_a_large_request_runs_alone_in_a_thread_and_small_ones_on_the_loop(
        bundle: Bundle) -> None:
    threads: list[tuple[int, int]] = []  # (rows, thread id) of every run

    def run(bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> Scores:
        threads.append((len(indices), threading.get_ident()))
        return bundle.run(indices, weights)

    batcher = Batcher(run, max_size=64, max_wait_s=0.02, thread_rows=8)

    async def scenario() -> None:
        await asyncio.gather(batcher.run(bundle, *rows(bundle, 1, seed=3)),  # at once
                             batcher.run(bundle, *rows(bundle, 8)),
                             batcher.run(bundle, *rows(bundle, 2, seed=1)),
                             batcher.run(bundle, *rows(bundle, 3, seed=2)))

    loop_thread = threading.get_ident()
    asyncio.run(scenario())
    by_rows = dict(threads)
    assert len(threads) == 3 and sorted(by_rows) == [1, 5, 8]  # the small two coalesced
    assert by_rows[1] == by_rows[5] == loop_thread and by_rows[8] != loop_thread


def test_zero_wait_turns_batching_off(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=0.0)

    async def scenario() -> None:
        await asyncio.gather(*(batcher.run(bundle, *rows(bundle, 1, seed=i)) for i in range(3)))

    asyncio.run(scenario())
    assert [size for _, size in run.runs] == [1, 1, 1]


def test_close_runs_what_is_waiting_and_later_requests_directly(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=30.0)

    async def scenario() -> None:
        waiting = [asyncio.create_task(batcher.run(bundle, *rows(bundle, 1, seed=i)))
                   for i in range(3)]
        await asyncio.sleep(0.01)
        batcher.close()
        await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
        await asyncio.wait_for(batcher.run(bundle, *rows(bundle, 2)), timeout=5)

    asyncio.run(scenario())
    assert [size for _, size in run.runs] == [1, 2, 2]  # the first ran at once


def test_each_request_runs_on_the_model_it_came_with(bundle: Bundle, bundle_dir: Path,
                                                     tmp_path: Path) -> None:
    other = Bundle.load(copy_bundle(bundle_dir, tmp_path / "other", version="2"))
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=0.02)

    async def scenario() -> None:
        await asyncio.gather(
            batcher.run(bundle, *rows(bundle, 4)),  # at once: the others wait together
            batcher.run(bundle, *rows(bundle, 2)), batcher.run(other, *rows(other, 3)),
            batcher.run(bundle, *rows(bundle, 1)),
        )

    asyncio.run(scenario())
    assert sorted((b is bundle, size) for b, size in run.runs) == [(False, 3), (True, 3),
                                                                   (True, 4)]


def test_a_failed_run_fails_every_waiting_request(bundle: Bundle) -> None:
    batcher = Batcher(Counting(fail=True), max_size=64, max_wait_s=0.01)

    async def scenario() -> list[BaseException | Scores]:
        work = [batcher.run(bundle, *rows(bundle, 1, seed=i)) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*work, return_exceptions=True), timeout=5)

    results = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_cancelled_request_does_not_break_its_batch(bundle: Bundle) -> None:
    run = Counting()
    batcher = Batcher(run, max_size=64, max_wait_s=0.02)

    async def scenario() -> Scores:
        first = asyncio.create_task(batcher.run(bundle, *rows(bundle, 2)))  # runs at once
        gone = asyncio.create_task(batcher.run(bundle, *rows(bundle, 5)))
        kept = asyncio.create_task(batcher.run(bundle, *rows(bundle, 1)))
        await asyncio.sleep(0)
        gone.cancel()
        await first
        return await asyncio.wait_for(kept, timeout=5)

    assert len(asyncio.run(scenario()).score) == 1
    assert [size for _, size in run.runs] == [2, 1]
