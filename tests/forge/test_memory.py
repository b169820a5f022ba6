"""Memory is given back once a backlog has drained (forge.memory)."""

from __future__ import annotations

import gc

from forge.memory import MemoryKeeper, trim


def test_released_once_the_live_tasks_fall_to_a_quarter_of_the_peak() -> None:
    released: list[int] = []
    keeper = MemoryKeeper(least=1000, release=lambda: released.append(1) or 7)
    assert [keeper.observe(n) for n in (10, 4000, 2000, 1001)] == [None] * 4
    assert keeper.observe(1000) == 7  # a quarter of the 4,000 peak
    assert keeper.observe(900) is None  # the peak starts again from there (1,000)
    assert keeper.observe(250) == 7  # and a quarter of that is released too
    assert keeper.observe(0) is None  # a peak of 250 is below the least
    assert released == [1, 1]


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
