"""The live frame queue and the cross-stream micro-batcher, as plain asyncio (no gRPC, no model)."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from staa_serve.models.errors import InvalidInput
from staa_serve.server.batcher import MicroBatcher
from staa_serve.server.errors import IdleTimeout, Overloaded
from staa_serve.server.budget import ByteBudget
from staa_serve.server.frame_queue import FRAME_OVERHEAD_BYTES, FrameQueue, QueuedFrame
from staa_serve.server.session import FrameInput


def item(index: int, size: int = 0) -> QueuedFrame:
    return QueuedFrame(index, FrameInput("rgb24", bytes(size), 0, 0, index, 0.0), 0.0)


def make_queue(capacity: int, lossless: bool = False, stream_bytes: int = 1 << 30,
               server: ByteBudget | None = None) -> FrameQueue:
    return FrameQueue(capacity, ByteBudget(stream_bytes, "max_stream_buffered_bytes"),
                      server or ByteBudget(1 << 30, "max_buffered_bytes"), lossless)


async def settle() -> None:
    """Let every runnable task run until it blocks (no wall-clock wait)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def drain(queue: FrameQueue) -> list[int]:
    taken = []
    while (frame := await queue.get(idle_seconds=1.0)) is not None:
        taken.append(frame.index)
        queue.done(frame)
    return taken


def test_a_full_queue_drops_its_oldest_frames_and_counts_them():
    async def scenario():
        queue = make_queue(capacity=3)
        for index in range(7):
            queue.put(item(index))
        queue.end()
        return await drain(queue), queue.dropped

    assert asyncio.run(scenario()) == ([4, 5, 6], 4)


def test_a_queue_over_its_byte_budget_drops_its_oldest_frames_and_gives_the_bytes_back():
    async def scenario():
        server = ByteBudget(1 << 30, "max_buffered_bytes")
        frame_size = 1000 + FRAME_OVERHEAD_BYTES
        queue = make_queue(capacity=64, stream_bytes=3 * frame_size, server=server)
        for index in range(7):
            queue.put(item(index, 1000))
        held = server.used
        queue.end()
        taken = await drain(queue)
        return held // frame_size, taken, queue.dropped, server.used

    assert asyncio.run(scenario()) == (3, [4, 5, 6], 4, 0)


def test_a_drop_tolerant_stream_holds_at_most_one_frame_while_other_streams_hold_the_server_budget():
    async def scenario():
        server = ByteBudget(4096, "max_buffered_bytes")
        hog, polite = make_queue(64, server=server), make_queue(64, server=server)
        hog.put(item(0, 3000))
        polite.put(item(0, 100))  # fits
        sizes = []
        for index in range(1, 5):  # each overshoots: the stream drops its own oldest and keeps the newest
            polite.put(item(index, 3000))
            sizes.append(len(polite))
        newest = (await polite.get(1.0)).index
        return sizes, polite.dropped, newest, len(hog)

    assert asyncio.run(scenario()) == ([1, 1, 1, 1], 4, 4, 1)


def test_frames_after_the_end_are_dropped_not_queued():
    async def scenario():
        queue = make_queue(capacity=4)
        queue.put(item(0))
        queue.end()  # a draining server ends every stream's queue while its reader still runs
        queue.put(item(1))
        return await drain(queue), queue.dropped

    assert asyncio.run(scenario()) == ([0], 1)


def test_a_lossless_queue_holds_the_sender_instead_of_dropping():
    async def scenario():
        queue = make_queue(capacity=2, lossless=True)

        async def send():
            for index in range(6):
                await queue.room()
                queue.put(item(index))
            queue.end()

        sender = asyncio.create_task(send())
        await settle()
        held = len(queue)  # the sender waits at capacity
        taken = await drain(queue)
        await sender
        return held, taken, queue.dropped

    assert asyncio.run(scenario()) == (2, [0, 1, 2, 3, 4, 5], 0)


def test_a_lossless_stream_waits_for_the_server_budget_before_reading_more():
    async def scenario():
        server = ByteBudget(2048, "max_buffered_bytes")
        other, queue = make_queue(64, server=server), make_queue(64, lossless=True, server=server)
        other.put(item(0, 3000))  # another stream holds the whole budget
        queue.put(item(0, 10))
        waiting = asyncio.create_task(queue.room())
        await settle()
        blocked = not waiting.done()
        frame = await other.get(1.0)
        other.done(frame)  # the other stream's frame is processed: its bytes come back
        await settle()
        return blocked, waiting.done()

    assert asyncio.run(scenario()) == (True, True)


def test_closing_a_stream_gives_back_everything_it_held():
    async def scenario():
        server = ByteBudget(1 << 20, "max_buffered_bytes")
        queue = make_queue(64, server=server)
        for index in range(5):
            queue.put(item(index, 100))
        await queue.get(1.0)  # one frame taken by the processor, never finished (the stream was cancelled)
        queue.close()
        return server.used

    assert asyncio.run(scenario()) == 0


def test_frames_before_a_bad_one_are_still_taken_then_the_error():
    async def scenario():
        queue = make_queue(capacity=8)
        for index in range(3):
            queue.put(item(index))
        queue.end(InvalidInput("Frame.width=0"))
        taken = [(await queue.get(1.0)).index for _ in range(3)]
        with pytest.raises(InvalidInput, match="Frame.width=0"):
            await queue.get(1.0)
        return taken

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_an_idle_stream_times_out_with_a_message_naming_the_setting():
    async def scenario():
        with pytest.raises(IdleTimeout, match="no frame for 0.05 s .stream_idle_seconds."):
            await make_queue(capacity=2).get(idle_seconds=0.05)

    asyncio.run(scenario())


class Recorder:
    """A stand-in for the model forward: records each batch, takes ``seconds`` per call."""

    def __init__(self, seconds: float = 0.0, fail_on=None):
        self.seconds, self.fail_on = seconds, fail_on
        self.batches: list[tuple[list, object]] = []
        self.threads: set[str] = set()

    def __call__(self, items, key):
        self.threads.add(threading.current_thread().name)
        if self.fail_on in items:
            raise RuntimeError(f"forward failed on {self.fail_on}")
        time.sleep(self.seconds)
        self.batches.append((list(items), key))
        return [f"{key}:{value}" for value in items]


def test_windows_arriving_while_the_model_is_busy_share_the_next_forward():
    recorder = Recorder(seconds=0.05)

    async def scenario():
        batcher = MicroBatcher(recorder, ThreadPoolExecutor(1, thread_name_prefix="model"), max_batch=4, max_wait=0.0)
        first = asyncio.create_task(batcher.submit("a0", "k"))
        await asyncio.sleep(0.01)  # a0 is in its forward; the next six queue up behind it
        rest = [asyncio.create_task(batcher.submit(f"s{index}", "k")) for index in range(6)]
        results = await asyncio.gather(first, *rest)
        batcher.close()
        return [result for result, _ in results], batcher.idle.is_set()

    results, idle = asyncio.run(scenario())
    assert results == ["k:a0"] + [f"k:s{index}" for index in range(6)]
    assert [len(items) for items, _ in recorder.batches] == [1, 4, 2]  # max_batch bounds a forward
    assert recorder.threads == {"model_0"} and idle


def test_windows_with_different_parameters_never_share_a_forward_and_keep_their_order():
    recorder = Recorder(seconds=0.02)

    async def scenario():
        batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), max_batch=8, max_wait=0.01)
        keys = ["p", "q", "p", "q", "p"]
        results = await asyncio.gather(*[batcher.submit(index, key) for index, key in enumerate(keys)])
        batcher.close()
        return [result for result, _ in results]

    assert asyncio.run(scenario()) == ["p:0", "q:1", "p:2", "q:3", "p:4"]
    assert [(items, key) for items, key in recorder.batches] == [([0, 2, 4], "p"), ([1, 3], "q")]


def test_a_failing_forward_fails_only_its_own_callers_and_a_cancelled_window_is_not_run():
    recorder = Recorder(seconds=0.03, fail_on="bad")

    async def scenario():
        batcher = MicroBatcher(recorder, ThreadPoolExecutor(1), max_batch=1, max_wait=0.0)
        busy = asyncio.create_task(batcher.submit("busy", "k"))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(batcher.submit("gone", "k"))
        bad = asyncio.create_task(batcher.submit("bad", "k"))
        await asyncio.sleep(0)
        gone.cancel()  # the client left while its window queued
        with pytest.raises(RuntimeError, match="forward failed on bad"):
            await bad
        after = await batcher.submit("after", "k")
        await busy
        batcher.close()
        return after[0]

    assert asyncio.run(scenario()) == "k:after"
    assert [items for items, _ in recorder.batches] == [["busy"], ["after"]]


def test_live_windows_go_before_clip_windows_that_queued_earlier():
    release = threading.Event()
    started = threading.Event()
    order = []

    def forward(items, key):
        if items == ["busy"]:
            started.set()
            release.wait(timeout=60)
        order.append(list(items))
        return items

    async def scenario():
        batcher = MicroBatcher(forward, ThreadPoolExecutor(1), max_batch=2, max_wait=0.0)
        busy = asyncio.create_task(batcher.submit("busy", "k", priority=1))
        await asyncio.to_thread(started.wait, 60)  # the model thread is inside the first forward
        clips = [asyncio.create_task(batcher.submit(f"clip{index}", "k", priority=1)) for index in range(3)]
        await settle()
        live = asyncio.create_task(batcher.submit("live", "k", priority=0))
        await settle()
        release.set()
        await asyncio.gather(busy, live, *clips)
        batcher.close()

    asyncio.run(scenario())
    assert order == [["busy"], ["live", "clip0"], ["clip1", "clip2"]]


def test_a_reservation_waits_for_released_bytes_and_gives_up_after_its_timeout():
    async def scenario():
        budget = ByteBudget(100, "max_buffered_bytes")
        order = []

        async def call(name: str, size: int, timeout: float):
            try:
                async with budget.reserve_waiting(size, name, timeout):
                    order.append(f"{name} in")
                    await release.wait()
            except Overloaded as error:
                order.append(f"{name} refused: {error}")

        release = asyncio.Event()
        first = asyncio.create_task(call("first", 80, 60))
        await settle()
        second = asyncio.create_task(call("second", 50, 60))  # waits: only 20 bytes free
        await settle()
        waiting = order.copy()
        await call("too big", 101, 60)  # can never fit: refused at once
        await call("impatient", 50, 0.01)
        release.set()
        await asyncio.gather(first, second)
        return waiting, order, budget.used

    waiting, order, used = asyncio.run(scenario())
    assert waiting == ["first in"]
    assert order[1].startswith("too big refused: too big needs 0.0 MiB") and "retry later" in order[1]
    assert order[2].startswith("impatient refused") and order[3] == "second in" and used == 0
