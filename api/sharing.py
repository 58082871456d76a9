"""One database question shared by the requests that ask it at the same time, never answered from the past.

Every API request asks the database who its key belongs to, and every list request asks whether the
analysis changed. Under load, twenty requests ask the same question within a millisecond; each asking
costs a worker thread hop and a round trip. :class:`SharedCall` lets them share one asking, on one
condition that keeps the answers as fresh as asking alone: a caller only takes the result of a run that
started after the caller arrived. A revoked key is refused, and a new analysis is seen, by every request
that arrives after the change is committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from starlette.concurrency import run_in_threadpool

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SharedCall(Generic[K, T]):
    """``await shared(key)``: the result of ``fn(key)`` from a run that started after the call.

    A caller joins the run of its key that started after it arrived, or waits for the run in progress
    (which may predate it) to finish and then starts or joins the next one. So each key has at most one
    run in flight, and each run serves every caller that arrived while the one before it ran. A run that
    raises raises in every caller that shares it.

    Args:
        fn: a blocking function of the key (it runs in the threadpool).
        max_keys: keys whose last run is remembered; older finished ones are forgotten beyond it.
    """

    def __init__(self, fn: Callable[[K], T], *, max_keys: int = 1024) -> None:
        self.fn = fn
        self.max_keys = max_keys
        self._runs: dict[K, tuple[float, asyncio.Future[T]]] = {}
        self.runs = 0

    async def __call__(self, key: K) -> T:
        arrived = time.perf_counter()
        loop = asyncio.get_running_loop()
        while True:
            started, task = self._runs.get(key, (float("-inf"), None))
            if task is not None and task.get_loop() is not loop:
                task = None  # left by another event loop (a test client's), which may be gone
            if task is not None and started >= arrived:
                return await asyncio.shield(task)
            if task is not None and not task.done():
                await asyncio.wait([task])  # it predates us: its answer may be older than our arrival
                continue
            return await asyncio.shield(self._start(key))

    def _start(self, key: K) -> asyncio.Future[T]:
        if len(self._runs) >= self.max_keys:
            for old in [k for k, (_, t) in self._runs.items() if t.done()][: len(self._runs) // 2 or 1]:
                del self._runs[old]
        started = time.perf_counter()
        task = asyncio.ensure_future(run_in_threadpool(self.fn, key))
        task.add_done_callback(_retrieve)
        self._runs[key] = (started, task)
        self.runs += 1
        return task


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Every caller awaits the task and sees its error; this only keeps asyncio from logging it as unseen
    # when the callers went away (a client disconnected) before it finished.
    if not task.cancelled():
        task.exception()
