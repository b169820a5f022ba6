"""Giving memory back to the system once a backlog has drained.

A daemon that held 100,000 queued tasks at a peak keeps, after they have run, most of the
memory they took: CPython's allocator and the C library's hold on to freed memory for reuse.
The heartbeat shows the keeper how many tasks are live; once that falls to a quarter of the
peak since the last release (a peak of at least `least` tasks), it runs a full collection and
asks the C library to return its free pages (`malloc_trim`, where the C library has one), on
the heartbeat's thread, a few times per drained backlog. The collection holds the interpreter
for ~10-15 ms (the daemon's own objects: queued tasks are not tracked by the collector).
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

import psutil

__all__ = ["MemoryKeeper", "trim"]


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to ask
        return None


_MALLOC_TRIM = _libc_trim()


def trim() -> int:
    """Collect garbage and return free memory to the system; the resident bytes given back
    (0 if none, or if the system took none)."""
    process = psutil.Process()
    before = process.memory_info().rss
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)  # (ctypes lets go of the interpreter meanwhile)
    return max(0, before - process.memory_info().rss)


class MemoryKeeper:
    """Decides when a drained backlog's memory is given back (see the module docstring)."""

    def __init__(self, least: int = 5_000, release: Callable[[], int] = trim) -> None:
        self.least = least
        self.release = release
        self.peak = 0

    def observe(self, live: int) -> int | None:
        """`live` tasks are in the hot state now: the bytes given back if it released memory
        (None if it was not time to)."""
        self.peak = max(self.peak, live)
        if self.peak < self.least or live > self.peak // 4:
            return None
        self.peak = live
        return self.release()
