"""The reader thread of `forge top`: it follows the log with blocking reads (`EventStore.tail`,
XREAD BLOCK) and hands the new entries to the view, which folds them on its own thread.

It never polls: a new entry wakes it at once. When the log cannot be read (the server is
restarting), it says so and tries again from where it stopped, with a growing delay.
"""

from __future__ import annotations

import queue
import threading

from events.errors import StoreUnavailable
from events.store import EventStore, LogEntry

__all__ = ["LogFollower"]

BLOCK_MS = 250  # how long one XREAD waits: bounds how long stopping takes
MAX_DELAY = 5.0


class LogFollower:
    """Follows the log from `position` in a daemon thread; `drain()` returns what arrived."""

    def __init__(self, store: EventStore, position: str) -> None:
        self._store = store
        self.position = position
        self._entries: queue.SimpleQueue[LogEntry] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forge-top-tail", daemon=True)
        self.error: str | None = None  # why the log cannot be read now, if it cannot

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self) -> list[LogEntry]:
        """Every entry read since the last call, in log order."""
        out: list[LogEntry] = []
        while True:
            try:
                out.append(self._entries.get_nowait())
            except queue.Empty:
                return out

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                if self.error is not None:
                    self._store.last_id()  # reachable again: say so before the first entry
                    self.error = None
                for entry in self._store.tail(self.position, BLOCK_MS, stop=self._stop):
                    self.position = entry.id
                    self._entries.put(entry)
                    self.error = None
                    delay = 0.2
                return
            except StoreUnavailable as e:
                self.error = str(e)
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_DELAY)
