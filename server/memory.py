"""Giving freed memory back to the system (glibc), so one burst of large requests does not leave the
server's RSS high for good. No-ops where the C library is not glibc."""

from __future__ import annotations

import ctypes
import time

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def map_large_blocks_separately() -> None:
    """glibc keeps freed blocks below its mmap threshold in the heap and raises that threshold to
    the size of each large block freed (up to 32 MiB), so after one burst of frame-sized buffers the
    RSS stays high. A fixed 1 MiB threshold maps each frame-sized buffer on its own: freeing it
    gives its pages back at once."""
    if _LIBC is not None:
        _LIBC.mallopt(_M_ARENA_MAX, 2)  # gRPC's and the pools' threads share two arenas: less to fragment
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 8 << 20)


class Trimmer:
    """``after_large_call()`` returns the free pages of every malloc arena to the system, at most once
    per ``min_interval`` seconds. A request body arrives from the transport as many small slices,
    which land in the heap whatever the mmap threshold; once freed, only a trim gives them back."""

    def __init__(self, min_interval: float = 1.0):
        self.min_interval = min_interval
        self._last = 0.0

    def after_large_call(self, last_in_flight: bool = False) -> None:
        """``last_in_flight``: no other such call is running (always trim then: the burst is over)."""
        now = time.monotonic()
        if _LIBC is None or (now - self._last < self.min_interval and not last_in_flight):
            return
        self._last = now
        _LIBC.malloc_trim(0)
