"""Cross-stream micro-batching: windows from every request share forwards on the one model thread.

A window waits at most ``max_wait`` seconds for company and a forward takes at most ``max_batch``
windows. Most batching happens on its own: while one forward runs, the windows of other streams
queue up and the next forward takes them all. Live windows (priority 0) go before clip windows
(priority 1): a live stream waits for at most the forward already running. Windows asking for
different STAA parameters or top-k go in separate forwards (one forward applies one set of parameters). Each caller awaits its
own window, so a stream that submits its next window only after the previous one came back keeps
its windows in order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Hashable


@dataclass
class _Job:
    item: object
    key: Hashable
    future: asyncio.Future
    priority: int = 0  # lower goes first: live windows before clip windows
    queued: float = field(default_factory=time.perf_counter)


class BusyTracker:
    """Counts requests in flight (event-loop thread only); ``idle`` is set while there are none.
    ``with tracker:`` around each request."""

    def __init__(self):
        self.idle = threading.Event()
        self.idle.set()
        self.outstanding = 0

    def __enter__(self):
        self.outstanding += 1
        self.idle.clear()

    def __exit__(self, *exc_info):
        self.outstanding -= 1
        if not self.outstanding:
            self.idle.set()


class MicroBatcher:
    """``await submit(item, key)`` -> ``run(items, key)[i]``; ``run`` goes on ``executor`` (the model thread).

    ``idle`` is set while nothing is queued or running (the robustness lane waits on it), and
    ``on_batch(size, queue_seconds)`` sees every forward (metrics).
    """

    def __init__(self, run: Callable[[list, Hashable], list], executor: Executor, max_batch: int = 8,
                 max_wait: float = 0.002, on_batch: Callable[[int, list[float]], None] | None = None):
        if max_batch < 1 or max_wait < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait >= 0, got {max_batch}, {max_wait}")
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait = max_batch, max_wait
        self.on_batch = on_batch
        self.busy = BusyTracker()
        self.idle = self.busy.idle
        self._jobs: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item, key: Hashable, priority: int = 0):
        """Queue ``item``; returns ``(result, seconds it queued)`` or raises its batch's error. Jobs of a
        lower ``priority`` value are taken first; within a priority, oldest first."""
        self._start()
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(item, key, future, priority))
        self._wake.set()
        with self.busy:
            return await future

    def _start(self) -> None:
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._serve(), name="staa-batcher")

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            if len(self._jobs) < self.max_batch and self.max_wait > 0:
                await asyncio.sleep(self.max_wait)  # let windows that are about to arrive join this forward
            batch = self._take()
            if not batch:
                continue
            key = batch[0].key
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run, [job.item for job in batch], key)
            except Exception as error:  # one bad batch fails its callers, never the worker
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch), [started - job.queued for job in batch])
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result((result, started - job.queued))

    def _take(self) -> list[_Job]:
        """Up to max_batch live jobs with the key of the first job of the most urgent priority, most
        urgent then oldest first; the rest keep their places."""
        jobs = [job for job in self._jobs if not job.future.done()]  # callers that left are dropped
        if not jobs:
            self._jobs.clear()
            return []
        by_urgency = sorted(jobs, key=lambda job: job.priority)  # stable: oldest first within a priority
        key = by_urgency[0].key
        batch = [job for job in by_urgency if job.key == key][: self.max_batch]
        taken = {id(job) for job in batch}
        self._jobs = deque(job for job in jobs if id(job) not in taken)
        return batch

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        for job in self._jobs:
            if not job.future.done():
                job.future.cancel()
        self._jobs.clear()
        self.idle.set()
