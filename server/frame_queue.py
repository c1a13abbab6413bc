"""A live stream's frames between its reader and its processor: bounded, drop-oldest, with end and error."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.errors import InvalidInput
from server.errors import IdleTimeout

if TYPE_CHECKING:
    from server.session import FrameInput


@dataclass(frozen=True)
class QueuedFrame:
    index: int  # arrival index: frames received on this stream before it, dropped ones included
    frame: FrameInput
    arrived: float  # perf_counter() when it came off the wire


class FrameQueue:
    """Frames between a stream's reader and processor: bounded, drop-oldest, with end and error."""

    def __init__(self, capacity: int, lossless: bool = False):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.lossless = lossless  # full queue: wait for room (the sender is slowed) instead of dropping
        self.dropped = 0
        self._frames: deque[QueuedFrame] = deque()
        self._arrived = asyncio.Event()  # a frame, the end or an error came: wakes get()
        self._room = asyncio.Event()  # get() took a frame: wakes a lossless put()
        self._ended = False
        self._error: BaseException | None = None

    def __len__(self) -> int:
        return len(self._frames)

    async def put(self, item: QueuedFrame) -> None:
        while self.lossless and len(self._frames) >= self.capacity and not self._ended:
            self._room.clear()
            await self._room.wait()
        if self._ended:  # the server is draining: frames that come after the end are not explained
            self.dropped += 1
            return
        if len(self._frames) >= self.capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(item)
        self._arrived.set()

    def end(self, error: BaseException | None = None) -> None:
        """No more frames; with ``error``, raised once the frames before it are taken."""
        self._ended, self._error = True, error
        self._arrived.set()
        self._room.set()

    async def get(self, idle_seconds: float) -> QueuedFrame | None:
        """The oldest frame; None once ended and empty; the reader's error once empty; or IdleTimeout."""
        while True:
            if self._frames:  # frames that came before a bad one are still explained: nothing is lost
                self._room.set()
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


class SequenceCheck:
    """Frame.sequence must increase along a stream; checked on arrival so a bad frame fails at once."""

    def __init__(self):
        self.last: int | None = None

    def __call__(self, sequence: int) -> None:
        if self.last is not None and sequence <= self.last:
            raise InvalidInput(f"Frame.sequence={sequence} is not greater than the previous {self.last}")
        self.last = sequence
