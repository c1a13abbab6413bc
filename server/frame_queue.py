"""A live stream's frames between its reader and its processor: bounded in count and in bytes,
drop-oldest or lossless, with end and error."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from staa_serve.models.errors import InvalidInput
from staa_serve.server.budget import ByteBudget, wait_for_room
from staa_serve.server.errors import IdleTimeout

if TYPE_CHECKING:
    from staa_serve.server.session import FrameInput

# Charged per frame beyond its pixel bytes: the Python objects around it (so empty frames count too).
FRAME_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class QueuedFrame:
    index: int  # arrival index: frames received on this stream before it, dropped ones included
    frame: FrameInput
    arrived: float  # perf_counter() when it came off the wire

    @property
    def size(self) -> int:
        return len(self.frame.data) + FRAME_OVERHEAD_BYTES


class FrameQueue:
    """Frames between a stream's reader and processor.

    A frame's bytes are charged to the stream's budget and the server's from the moment it comes
    off the wire until the processor is ``done`` with it. A drop-tolerant queue makes room by
    dropping its own oldest frames (counted); a lossless one makes its reader wait in ``room``
    before taking the next message off the wire, so gRPC flow control holds the sender.
    """

    def __init__(self, capacity: int, stream_budget: ByteBudget, server_budget: ByteBudget, lossless: bool = True):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.lossless = lossless
        self.budgets = (stream_budget, server_budget)
        self.dropped = 0
        self._frames: deque[QueuedFrame] = deque()
        self._charged = 0  # bytes this queue holds in the budgets (queued + being processed)
        self._arrived = asyncio.Event()  # a frame, the end or an error came: wakes get()
        self._ended = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._frames)

    async def room(self) -> None:
        """Lossless: wait until the count and both budgets have room (or the queue ended)."""
        if self.lossless:
            await wait_for_room(*self.budgets,
                                ready=lambda: self._ended or (not self._frames and self._charged == 0))
            while len(self._frames) >= self.capacity and not self._ended:
                await self.budgets[0].changed()

    def put(self, item: QueuedFrame) -> None:
        if self._ended:  # the server is draining: frames that come after the end are not explained
            self.dropped += 1
            return
        if not self.lossless:
            while self._frames and not self._fits(item.size):
                self._release(self._frames.popleft().size)
                self.dropped += 1
            if not self._fits(item.size) and self._charged:  # other streams hold the server's budget
                self.dropped += 1
                return
        self._charge(item.size)
        self._frames.append(item)
        self._arrived.set()

    def done(self, item: QueuedFrame) -> None:
        """The processor has finished with ``item``: its bytes go back to the budgets."""
        self._release(item.size)

    def end(self, error: BaseException | None = None) -> None:
        """No more frames; with ``error``, raised once the frames before it are taken."""
        self._ended, self._error = True, error
        self._arrived.set()
        self.budgets[0].wake()

    def close(self) -> None:
        """The stream is over: whatever it still holds goes back to the budgets."""
        self._frames.clear()
        self._release(self._charged)

    async def get(self, idle_seconds: float) -> QueuedFrame | None:
        """The oldest frame; None once ended and empty; the reader's error once empty; or IdleTimeout."""
        while True:
            if self._frames:  # frames that came before a bad one are still explained: nothing is lost
                return self._frames.popleft()
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), idle_seconds)
            except TimeoutError:
                raise IdleTimeout(f"no frame for {idle_seconds:g} s (stream_idle_seconds); stream closed") from None

    def _fits(self, size: int) -> bool:
        return len(self._frames) < self.capacity and all(budget.fits(size) for budget in self.budgets)

    def _charge(self, size: int) -> None:
        self._charged += size
        for budget in self.budgets:
            budget.take(size)

    def _release(self, size: int) -> None:
        size = min(size, self._charged)
        self._charged -= size
        for budget in self.budgets:
            budget.release(size)


class SequenceCheck:
    """Frame.sequence must increase along a stream; checked on arrival so a bad frame fails at once."""

    def __init__(self):
        self.last: int | None = None

    def __call__(self, sequence: int) -> None:
        if self.last is not None and sequence <= self.last:
            raise InvalidInput(f"Frame.sequence={sequence} is not greater than the previous {self.last}")
        self.last = sequence
