"""A live stream from frames on the wire to events out, as plain asyncio (no grpc): testable alone.

Two tasks per stream. The reader takes frames off the wire and puts them in a ``FrameQueue``
bounded in frames and in bytes; when it is full, a drop-tolerant stream drops its oldest
unprocessed frame (live video: the newest frames matter, counted for ``Ack.dropped``) and a
lossless one stops reading, so flow control slows its sender. The processor
decodes (on the live pool, which clip calls never use), assembles windows and awaits each
window's explanation (at live priority) before the next, so a stream's
windows stay in order and a stream can never have more than one window in the model's queue.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator

from staa_serve.server.engine import LIVE, PendingRobustness
from staa_serve.server.errors import Draining
from staa_serve.server.frame_queue import QueuedFrame
from staa_serve.server.session import FrameInput, StreamSession


@dataclass(frozen=True)
class AckDue:
    """Time to tell the client how many frames arrived and how many were dropped."""


async def read_frames(frames: AsyncIterator[FrameInput], session: StreamSession) -> None:
    """Reader task: wire -> the session's queue, until the client's end or bad input. (A draining
    server ends the queue itself, so the stream need not wait for the client's next frame.)"""
    queue = session.queue
    try:
        while True:
            await queue.room()  # lossless and over budget: leave the next message on the wire (flow control)
            frame = await anext(frames, None)
            if frame is None:
                break
            session.sequence(frame.sequence)
            queue.put(QueuedFrame(session.received, frame, time.perf_counter()))
            session.received += 1
        queue.end()
    except Exception as error:  # noqa: BLE001 - handed to the processor, which ends the stream with it
        queue.end(error)


async def live_events(session: StreamSession, engine, draining: asyncio.Event, idle_seconds: float,
                      metrics=None) -> AsyncIterator:
    """Processor: queue -> explanations (in window order), robustness results, AckDue; Draining at the end
    when the server is shutting down."""
    queue = session.queue
    loop = asyncio.get_running_loop()
    pending = PendingRobustness()

    async def explained(windows, arrived: float):
        for window in windows:
            engine.cadence.note(session.session_id)
            yield await engine.explain(window, session.options, LIVE)
            if metrics is not None:
                metrics.observe_frame_to_heatmap(time.perf_counter() - arrived)
            pending.add(engine.score_robustness(window, session.options))

    try:
        while (item := await queue.get(idle_seconds)) is not None:
            try:
                windows = await loop.run_in_executor(engine.live_executor, session.accept_frame, item.index, item.frame)
            finally:
                queue.done(item)
            async for explanation in explained(windows, item.arrived):
                yield explanation
            for result in pending.ready():
                yield result
            session.note_dropped(queue.dropped, metrics)
            if session.ack_due():
                yield AckDue()
        async for explanation in explained(session.finish(), time.perf_counter()):
            yield explanation
        for result in pending.ready() + await pending.rest():
            yield result
        session.note_dropped(queue.dropped, metrics)
        yield AckDue()
        if draining.is_set():
            raise Draining("server is shutting down (draining); reconnect to another replica")
    finally:
        pending.cancel()
