"""Run a blocking iterator on a worker pool and consume it from asyncio, one item at a time.

The iterator advances by one item per pool task, so a worker thread is held only while an item is
being produced (a clip's next window decoded), never while the consumer waits for the model:
a slow consumer costs no thread, and the pool stays free for other calls between items.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import AsyncIterator, Callable, Iterator, TypeVar

Item = TypeVar("Item")
_DONE = object()


async def iterate_in_thread(make_iterator: Callable[[], Iterator[Item]], executor: Executor) -> AsyncIterator[Item]:
    """Yield the items of ``make_iterator()``, each produced by one task on ``executor``.

    The next item is produced while the consumer handles the current one (one item of
    read-ahead). When the consumer stops early (cancel, error) the iterator is closed on the pool
    once its current step ends. Exceptions raised by the iterator re-raise here.
    """
    loop = asyncio.get_running_loop()
    state: dict[str, Iterator[Item]] = {}

    def first():
        state["iterator"] = make_iterator()
        return next(state["iterator"], _DONE)

    def close(_=None) -> None:
        if "iterator" in state:
            try:
                executor.submit(state["iterator"].close)
            except RuntimeError:  # the pool is shut down: the server is stopping
                pass

    step = loop.run_in_executor(executor, first)
    try:
        while (item := await step) is not _DONE:
            step = loop.run_in_executor(executor, next, state["iterator"], _DONE)
            yield item
    finally:
        if step.done():
            close()
        else:
            step.add_done_callback(close)
