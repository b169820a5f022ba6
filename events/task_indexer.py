"""The daemon's task indexer: `TaskIndex.update` on a thread of its own, fed what the
orchestrator applies (`events.task_index` says what the index holds and how it is updated)."""

from __future__ import annotations

import threading
import time
from collections import deque

import structlog

from events import types as t
from events.state import TaskState
from events.task_index import Fed, TaskIndex

__all__ = ["TaskIndexer"]

_MOST_FED = 12_000  # entries fed to the indexer and not yet indexed it holds at most
_FEED_POKE = 5_000  # ... and how many wake it


class TaskIndexer:
    """Keeps a `TaskIndex` up to date on a thread of its own, so that indexing never holds up
    the caller: the daemon feeds it every entry its orchestrator applies (`feed`, cheap) and
    pokes it after each snapshot; it wakes by itself once enough entries are waiting, and
    indexes what it was fed at most `settle` seconds after (else the last entries of a burst
    would wait for the next snapshot, their summaries unwritten, and they and the final states
    they carry would keep a drained backlog's memory taken)."""

    def __init__(self, index: TaskIndex, idle: float = 30.0, settle: float = 2.0) -> None:
        self.index = index
        self.idle = idle  # the thread ends after this long with nothing fed
        self.settle = settle
        self._fed: deque[Fed] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running = False  # its thread runs (set and cleared under the lock)
        self._busy = False  # an update is under way

    def feed(
        self, before: str, entry_id: str, event: t.Event, ended: TaskState | None, cold: bool
    ) -> None:
        """An entry has been applied (the one before it was `before`; `ended`: the task it
        ended, in its final state; `cold`: its task was and stays ended): index it from here."""
        waiting = len(self._fed)
        if waiting < _MOST_FED:  # (else dropped: the indexer fills the gap from the log)
            self._fed.append((before, entry_id, event, ended, cold))
        if waiting + 1 == _FEED_POKE or not self._running:
            self.poke()

    def poke(self) -> None:
        """Index what has been fed, soon."""
        self._wake.set()
        with self._lock:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="forge-task-index", daemon=True).start()

    def flush(self, timeout: float) -> bool:
        """Index what has been fed, and wait for it (at most `timeout` seconds): True if none
        is left. What it holds are the last entries applied, and the final states of their
        tasks, spread over the memory a drained backlog leaves: held, they keep it taken."""
        deadline = time.monotonic() + timeout
        while True:
            if not self._busy and not self._wake.is_set():
                if not self._fed:
                    return True
                self.poke()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def _run(self) -> None:
        quiet = 0.0
        while True:
            if not self._wake.wait(self.settle) and not self._fed:
                quiet += self.settle
                if quiet >= self.idle:
                    with self._lock:  # (a feed after this sees it stopped, and starts another)
                        if not self._fed and not self._wake.is_set():
                            self._running = False
                            return
                continue
            quiet = 0.0
            self._busy = True
            self._wake.clear()
            try:
                self.index.update(self._fed)
            except Exception as e:  # derived: the next poke or reader catches up (a client
                # closed under it as its fleet stops is one such failure, and not an error)
                structlog.get_logger("events.task_index").warning(
                    "task index update failed", error=f"{type(e).__name__}: {e}"
                )
            finally:
                self._busy = False
