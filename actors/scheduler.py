"""One timer thread for every actor: `tell` a message to an actor at a given monotonic time.

Pykka has no timers of its own; a thread per timer would not scale to thousands of retries, so
one thread sleeps on a condition until the earliest deadline in a heap.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
import time
from typing import Any, Protocol

__all__ = ["Scheduler", "Teller"]


class Teller(Protocol):
    def tell(self, message: Any) -> None: ...


class Scheduler:
    """Deliver `message` to `target` after `delay` seconds, from one background thread."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Teller, Any]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="forge-scheduler", daemon=True)
        self._thread.start()

    def after(self, delay: float, target: Teller, message: Any) -> None:
        when = time.monotonic() + max(0.0, delay)
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._counter), target, message))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, target, message = heapq.heappop(self._heap)
            with contextlib.suppress(Exception):  # a dead actor cannot take its timer
                target.tell(message)
