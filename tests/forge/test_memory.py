"""Memory is given back once a backlog has drained (forge.memory)."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from forge.memory import MemoryKeeper, trim

# a child process: after a 4 MiB block was freed (glibc then raises its threshold to 4 MiB), is
# a 1 MiB block served from a mapping of its own (given back when freed) or from the heap?
_MAPPED = """
import ctypes, sys
from forge.memory import fix_mmap_threshold
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
big = bytes(4 << 20)
del big
before = libc.mallinfo2().hblks
block = bytes(1 << 20)
print(libc.mallinfo2().hblks - before)
"""


def test_released_once_the_live_tasks_fall_to_a_quarter_of_the_peak() -> None:
    released: list[int] = []
    keeper = MemoryKeeper(least=1000, release=lambda: released.append(1) or 7)
    assert [keeper.observe(n) for n in (10, 4000, 2000, 1001)] == [None] * 4
    assert keeper.observe(1000) == 7  # a quarter of the 4,000 peak
    assert keeper.observe(900) is None  # the peak starts again from there (1,000)
    assert keeper.observe(250) == 7  # and a quarter of that is released too
    assert keeper.observe(20) == 7  # down to the backlog's end (a fiftieth of the least)
    assert keeper.observe(0) is None  # that was the last of this backlog
    assert released == [1, 1, 1]


def test_a_peak_below_the_least_never_releases() -> None:
    keeper = MemoryKeeper(least=1000, release=lambda: 1)
    assert [keeper.observe(n) for n in (999, 0, 999, 0)] == [None] * 4


def test_each_drained_backlog_releases_again() -> None:
    calls: list[int] = []
    keeper = MemoryKeeper(least=100, release=lambda: calls.append(1) or 0)
    for live in (400, 100, 0, 800, 150):
        keeper.observe(live)
    assert len(calls) == 3  # at 100 (of 400), at 0 (of 100) and at 150 (of 800)


def test_trim_collects_garbage_and_reports_what_the_process_gave_back() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    Cycle()
    assert gc.collect() >= 0
    junk = [Cycle() for _ in range(10_000)]
    del junk
    freed = trim()
    assert freed >= 0
    assert not any(isinstance(o, Cycle) for o in gc.get_objects())


@pytest.mark.parametrize(("how", "mapped"), [("fixed", "1"), ("stock", "0")])
def test_a_fixed_mmap_threshold_keeps_large_blocks_off_the_heap(how: str, mapped: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _MAPPED, how], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == mapped
