"""Admission of calls: how many of a kind are in flight, and the tasks of every call so a drain can end them."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from staa_serve.server.errors import Draining, Overloaded


class Admission:
    """Counts work of one kind in flight (calls, robustness jobs); past ``limit`` there is no place.
    Thread-safe: metrics read ``active`` from their own thread, and a job may end on another thread
    than the one that took its place (``take`` / ``release``)."""

    def __init__(self, limit: int, setting: str, what: str):
        self.limit, self.setting, self.what = limit, setting, what
        self.active = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """One place, if there is one (True); the caller releases it."""
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1

    @contextlib.contextmanager
    def admit(self):
        """A place for the duration of a call; past ``limit`` RESOURCE_EXHAUSTED."""
        if not self.take():
            raise Overloaded(f"server is at {self.setting}={self.limit} {self.what}; retry later")
        try:
            yield
        finally:
            self.release()


class TrackedCall:
    """One call in flight: its task, whether it is handing a response to gRPC (``sending``), and the
    error a drain ended it with while it was (raised when it resumes)."""

    def __init__(self, task: asyncio.Task):
        self.task = task
        self.sending = False
        self.ended: Draining | None = None


class CallTracker:
    """The calls in flight, so a drain can wait for them and end the stragglers itself with a clear
    status when its grace period is over (instead of gRPC cancelling them blind)."""

    def __init__(self):
        self.calls: dict[asyncio.Task, TrackedCall] = {}
        self.grace_over: float | None = None  # the grace period, once it ended with calls in flight
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self):
        call = TrackedCall(asyncio.current_task())
        self.calls[call.task] = call
        self._idle.clear()
        try:
            yield call
        finally:
            self.calls.pop(call.task, None)
            if not self.calls:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def end_all(self, grace: float) -> None:
        """End every call in flight. One working in our code is cancelled there (its handler answers
        ``ended_by_drain()``); one handing gRPC a response is marked instead and ends when it resumes:
        cancelled inside gRPC's send, its task would end with no status sent at all."""
        self.grace_over = grace
        for call in list(self.calls.values()):
            if call.sending:
                call.ended = self.ended_by_drain()
            else:
                call.task.cancel()

    def ended_by_drain(self) -> Draining | None:
        """Inside a cancelled call: the error to answer with when the drain ended it, else None."""
        if self.grace_over is None:
            return None
        return Draining(f"server is shutting down (draining): its grace period ({self.grace_over:g} s) ended "
                        f"before this call finished")


async def sent(call: TrackedCall, responses):
    """``responses``, with ``call`` marked as sending while gRPC has each one; a drain that ended the
    call meanwhile is raised when gRPC asks for the next."""
    async for response in responses:
        call.sending = True
        try:
            yield response
        finally:
            call.sending = False
        if call.ended is not None:
            raise call.ended
