"""The live frame queue and the cross-stream micro-batcher, as plain asyncio (no gRPC, no model)."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from models.errors import InvalidInput
from server.batcher import MicroBatcher
from server.errors import IdleTimeout
from server.frame_queue import FrameQueue, QueuedFrame


def item(index: int) -> QueuedFrame:
    return QueuedFrame(index, None, 0.0)


async def drain(queue: FrameQueue) -> list[int]:
    taken = []
    while (frame := await queue.get(idle_seconds=1.0)) is not None:
        taken.append(frame.index)
    return taken


def test_a_full_queue_drops_its_oldest_frames_and_counts_them():
    async def scenario():
        queue = FrameQueue(capacity=3)
        for index in range(7):
            await queue.put(item(index))
        queue.end()
        return await drain(queue), queue.dropped

    assert asyncio.run(scenario()) == ([4, 5, 6], 4)


def test_frames_after_the_end_are_dropped_not_queued():
    async def scenario():
        queue = FrameQueue(capacity=4)
        await queue.put(item(0))
        queue.end()  # a draining server ends every stream's queue while its reader still runs
        await queue.put(item(1))
        return await drain(queue), queue.dropped

    assert asyncio.run(scenario()) == ([0], 1)


def test_a_lossless_queue_holds_the_sender_instead_of_dropping():
    async def scenario():
        queue = FrameQueue(capacity=2, lossless=True)

        async def send():
            for index in range(6):
                await queue.put(item(index))
            queue.end()

        sender = asyncio.create_task(send())
        await asyncio.sleep(0.05)
        held = len(queue)  # the sender waits at capacity
        taken = await drain(queue)
        await sender
        return held, taken, queue.dropped

    assert asyncio.run(scenario()) == (2, [0, 1, 2, 3, 4, 5], 0)


def test_frames_before_a_bad_one_are_still_taken_then_the_error():
    async def scenario():
        queue = FrameQueue(capacity=8)
        for index in range(3):
            await queue.put(item(index))
        queue.end(InvalidInput("Frame.width=0"))
        taken = [(await queue.get(1.0)).index for _ in range(3)]
        with pytest.raises(InvalidInput, match="Frame.width=0"):
            await queue.get(1.0)
        return taken

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_an_idle_stream_times_out_with_a_message_naming_the_setting():
    async def scenario():
        with pytest.raises(IdleTimeout, match="no frame for 0.05 s .stream_idle_seconds."):
            await FrameQueue(capacity=2).get(idle_seconds=0.05)

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
