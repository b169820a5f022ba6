"""Giving memory back to the system once a backlog has drained.

A daemon that held 100,000 queued tasks at a peak keeps, after they have run, most of the
memory they took: CPython's allocator and the C library's hold on to freed memory for reuse.
The heartbeat shows the keeper how many tasks are live; once that falls to a quarter of the
peak since the last release, it runs a full collection and asks the C library to return its
free pages (`malloc_trim`, where the C library has one), on the heartbeat's thread: a few
times per backlog of at least `least` tasks, at each quartering and once it has drained (what
the last tasks freed stays held otherwise). The collection holds the interpreter for ~10-15 ms
(the daemon's own objects: queued tasks are not tracked by the collector). The daemon also
fixes the C library's mmap threshold (`fix_mmap_threshold`), so that large transient blocks
never fragment its heap.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

import psutil

__all__ = ["MemoryKeeper", "fix_mmap_threshold", "trim"]


def _glibc(name: str) -> Callable[..., int] | None:
    """A function of glibc's allocator (None elsewhere: musl, macOS have nothing to ask)."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    return function


_MALLOC_TRIM = _glibc("malloc_trim")
_MALLOPT = _glibc("mallopt")
_M_MMAP_THRESHOLD = -3  # mallopt(3)
MMAP_THRESHOLD = 128 * 1024


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have the C library serve every block of `threshold` bytes or more from a mapping of its
    own, returned to the system when freed, for the rest of the process (True if it took the
    setting). By default glibc raises the threshold to the size of each large block freed, up
    to 32 MiB, after which a daemon's large transient blocks (a snapshot's body, a page of
    replies) come from the heap and leave it fragmented: after a 200,000-task run the heap held
    60 MiB free that `malloc_trim` could not give back; with the threshold fixed, 3 MiB."""
    if _MALLOPT is None:
        return False
    return bool(_MALLOPT(_M_MMAP_THRESHOLD, threshold))


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
        self.draining = False  # a backlog of `least` or more drains: released to its end

    def observe(self, live: int) -> int | None:
        """`live` tasks are in the hot state now: the bytes given back if it released memory
        (None if it was not time to)."""
        self.peak = max(self.peak, live)
        if self.peak >= self.least:
            self.draining = True
        if not self.draining or live > self.peak // 4:
            return None
        self.peak = live
        if live <= self.least // 50:  # drained: this backlog's last release
            self.draining = False
        return self.release()
