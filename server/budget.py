"""Memory budgets in bytes: what the server holds for its clients is counted before it is held.

One ``ByteBudget`` is server-wide (``ServerConfig.max_buffered_bytes``); each live stream has its
own as well (``max_stream_buffered_bytes``). Queued live frames, the bodies of clip calls and every
call's decoded windows are charged to them. All of it runs on the event-loop thread: no locks.

Policy when a budget is full (ARCHITECTURE §8, README "Limits and fairness"):
- a lossless live stream stops reading from the wire until there is room again, so HTTP/2 flow
  control holds its sender (nothing is buffered for it meanwhile);
- a drop-tolerant live stream drops its own oldest queued frames (counted in ``Ack.dropped``);
- a new call that cannot get its reservation is refused with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib

from staa_serve.server.errors import Overloaded

MIB = 1 << 20


class ByteBudget:
    """A byte count against a limit. ``try_take`` respects the limit; ``take`` may overshoot it (bytes
    already in memory, such as a message the transport has delivered, are counted, never refused)."""

    def __init__(self, limit: int, name: str):
        if limit < 1:
            raise ValueError(f"{name} must be >= 1 byte, got {limit}")
        self.limit, self.name = limit, name
        self.used = 0
        self.peak = 0
        self._waiters: list[asyncio.Future] = []

    def has_room(self) -> bool:
        return self.used < self.limit

    def fits(self, size: int) -> bool:
        return self.used + size <= self.limit

    def take(self, size: int) -> None:
        self.used += size
        self.peak = max(self.peak, self.used)

    def try_take(self, size: int) -> bool:
        if not self.fits(size):
            return False
        self.take(size)
        return True

    def release(self, size: int) -> None:
        self.used -= size
        self.wake()

    def wake(self) -> None:
        """Wake everyone waiting in ``changed`` (bytes were released, or a waiter must re-check)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def changed(self) -> asyncio.Future:
        """A future that completes at the next ``release`` or ``wake``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    @contextlib.contextmanager
    def reserve(self, size: int, what: str):
        """Hold ``size`` bytes for a call's life, or raise Overloaded naming the budget. Yields a
        ``Reservation`` whose size can shrink once the real need is known."""
        if not self.try_take(size):
            raise self._overloaded(size, what)
        with self._held(size) as reservation:
            yield reservation

    @contextlib.asynccontextmanager
    async def reserve_waiting(self, size: int, what: str, timeout: float):
        """``reserve``, waiting up to ``timeout`` seconds for the bytes to be free (a call that waits
        here has read nothing yet: it costs no memory)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.try_take(size):
            if size > self.limit or loop.time() >= deadline:
                raise self._overloaded(size, what)
            try:
                await asyncio.wait_for(self.changed(), deadline - loop.time())
            except TimeoutError:
                pass
        with self._held(size) as reservation:
            yield reservation

    def _overloaded(self, size: int, what: str) -> Overloaded:
        return Overloaded(f"{what} needs {size / MIB:.1f} MiB but the server's {self.name}="
                          f"{self.limit / MIB:.0f} MiB has {max(0, self.limit - self.used) / MIB:.1f} MiB free; "
                          f"retry later")

    @contextlib.contextmanager
    def _held(self, size: int):
        reservation = Reservation(self, size)
        try:
            yield reservation
        finally:
            self.release(reservation.size)


class Reservation:
    def __init__(self, budget: ByteBudget, size: int):
        self.budget, self.size = budget, size

    def resize(self, size: int) -> None:
        """Set the held amount to ``size`` (after the call's real need is known); may overshoot."""
        if size < self.size:
            self.budget.release(self.size - size)
        else:
            self.budget.take(size - self.size)
        self.size = size


async def wait_for_room(*budgets: ByteBudget, ready=lambda: False) -> None:
    """Return once every budget has room, or ``ready()`` holds (checked at every wake-up)."""
    while not ready() and not all(budget.has_room() for budget in budgets):
        waiters = [budget.changed() for budget in budgets]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
