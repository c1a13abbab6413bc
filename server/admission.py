"""Admission of calls: how many of a kind are in flight, and the tasks of every call so a drain can end them."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from staa_serve.server.errors import Draining, Overloaded


class Admission:
    """Counts calls of one kind in flight; past ``limit`` a call gets RESOURCE_EXHAUSTED. Thread-safe:
    metrics read ``active`` from their own thread."""

    def __init__(self, limit: int, setting: str, what: str):
        self.limit, self.setting, self.what = limit, setting, what
        self.active = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self):
        with self._lock:
            if self.active >= self.limit:
                raise Overloaded(f"server is at {self.setting}={self.limit} {self.what}; retry later")
            self.active += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1


class CallTracker:
    """The tasks of the calls in flight, so a drain can wait for them and end the stragglers itself
    with a clear status when its grace period is over (instead of gRPC cancelling them blind)."""

    def __init__(self):
        self.tasks: set[asyncio.Task] = set()
        self.grace_over: float | None = None  # the grace period, once it ended with calls in flight
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self):
        task = asyncio.current_task()
        self.tasks.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self.tasks.discard(task)
            if not self.tasks:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def end_all(self, grace: float) -> None:
        self.grace_over = grace
        for task in list(self.tasks):
            task.cancel()

    def ended_by_drain(self) -> Draining | None:
        """Inside a cancelled call: the error to answer with when the drain ended it, else None."""
        if self.grace_over is None:
            return None
        return Draining(f"server is shutting down (draining): its grace period ({self.grace_over:g} s) ended "
                        f"before this call finished")
