"""An asyncio micro-batcher: concurrent requests coalesced into one onnxruntime run.

The first request of a batch starts a timer of `max_wait`; the batch runs when it fires
or as soon as `max_size` instances are waiting. A lone request waits for nobody: one that
finds nothing waiting and no other request come in this turn of the event loop runs at
once (requests that arrive together reach the batcher in the same turn; a lone one would
only pay for the timer and a suspension). Requests keep the model they started
with: a batch that spans a reload runs each model's share on that model. Batches run on
the event loop, so the batcher needs no locks; a request of `thread_rows` instances or
more runs alone in a thread instead, where onnxruntime releases the GIL and the loop
serves other requests meanwhile (docs/BENCHMARKS.md, "On the event loop or in a thread").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.bundle import Bundle, Scores

RunFn = Callable[[Bundle, np.ndarray, np.ndarray], Scores]


@dataclass
class _Waiting:
    bundle: Bundle
    indices: np.ndarray
    weights: np.ndarray
    future: asyncio.Future[Scores]


class Batcher:
    def __init__(self, run: RunFn, max_size: int, max_wait_s: float,
                 thread_rows: int | None = None) -> None:
        self._run = run
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._thread_rows = thread_rows
        self._waiting: list[_Waiting] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._turn_taken = False  # a request ran at once in this turn of the loop

    @property
    def enabled(self) -> bool:
        return self._max_wait_s > 0 and not self._closed

    async def run(self, bundle: Bundle, indices: np.ndarray, weights: np.ndarray) -> Scores:
        rows = len(indices)
        if self._thread_rows is not None and rows >= self._thread_rows:
            return await asyncio.to_thread(self._run, bundle, indices, weights)
        if not self.enabled or rows >= self._max_size:
            return self._run(bundle, indices, weights)
        loop = asyncio.get_running_loop()
        if not self._waiting and not self._turn_taken:
            self._turn_taken = True
            loop.call_soon(self._next_turn)  # runs after what this turn already scheduled
            return self._run(bundle, indices, weights)
        future: asyncio.Future[Scores] = loop.create_future()
        self._waiting.append(_Waiting(bundle, indices, weights, future))
        self._rows += rows
        if self._rows >= self._max_size:
            self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait_s, self.flush)
        return await future

    def _next_turn(self) -> None:
        self._turn_taken = False

    def flush(self) -> None:
        """Run everything waiting now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._rows = self._waiting, [], 0
        groups: dict[int, list[_Waiting]] = {}
        for item in waiting:
            groups.setdefault(id(item.bundle), []).append(item)
        for group in groups.values():
            self._run_group(group)

    def close(self) -> None:
        """Flush what waits and run later requests directly (shutdown: nothing is dropped)."""
        self._closed = True
        self.flush()

    def _run_group(self, group: list[_Waiting]) -> None:
        live = [item for item in group if not item.future.done()]  # skip cancelled clients
        if not live:
            return
        try:
            if len(live) == 1:
                only = live[0]
                only.future.set_result(self._run(only.bundle, only.indices, only.weights))
                return
            scores = self._run(
                live[0].bundle,
                np.concatenate([item.indices for item in live]),
                np.concatenate([item.weights for item in live]),
            )
        except Exception as e:  # every waiting request gets the failure, none hangs
            for item in live:
                item.future.set_exception(e)
            return
        start = 0
        for item in live:
            end = start + len(item.indices)
            item.future.set_result(_rows(scores, start, end))
            start = end


def _rows(scores: Scores, start: int, end: int) -> Scores:
    return Scores(
        scores.score[start:end],
        scores.attention[start:end],
        scores.contributions[start:end],
        scores.field_linear[start:end],
        scores.prediction[start:end],
    )
