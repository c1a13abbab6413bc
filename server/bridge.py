"""Run a blocking iterator on a worker thread and consume it from asyncio, with backpressure."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Executor
from typing import AsyncIterator, Callable, Iterator, TypeVar

Item = TypeVar("Item")
_DONE = object()


async def iterate_in_thread(
    make_iterator: Callable[[], Iterator[Item]], executor: Executor, max_pending: int = 2
) -> AsyncIterator[Item]:
    """Yield the items of ``make_iterator()`` produced on ``executor``.

    At most ``max_pending`` items wait unconsumed; when the consumer stops early (cancel,
    error) the producer notices within 0.1 s and stops, so no thread keeps decoding for a
    client that left. Exceptions raised by the iterator re-raise here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    slots = threading.Semaphore(max_pending)
    stopped = threading.Event()

    def send(item, error=None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, error))
        except RuntimeError:  # the loop closed under us: nobody is listening any more
            stopped.set()

    def produce() -> None:
        try:
            for item in make_iterator():
                while not slots.acquire(timeout=0.1):
                    if stopped.is_set():
                        return
                if stopped.is_set():
                    return
                send(item)
        except BaseException as error:  # re-raised on the consumer side
            send(_DONE, error)
            return
        send(_DONE)

    loop.run_in_executor(executor, produce)
    try:
        while True:
            item, error = await queue.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            slots.release()
            yield item
    finally:
        stopped.set()
