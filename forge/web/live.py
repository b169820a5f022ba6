"""The fleet now, kept up to date from the log, and the pushes the dashboard's pages listen to.

`LiveFleet` replays the log once (newest snapshot plus the tail), then one thread blocks in
the store's `tail` (`XREAD BLOCK`) and folds each new entry into its state, exactly as a
replay would, and hands a short description of the entries to every subscriber (the
server-sent-event streams of open pages). No polling: the thread wakes when the log grows.
If the log is unreachable, the thread waits and tries again, then replays from scratch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from events.errors import ForgeError
from events.projection import apply_entries
from events.replay import replay
from events.state import FleetState
from events.store import EventStore, LogEntry
from forge.cli.eventview import details, tag_of
from forge.log import get_logger

__all__ = ["LiveFleet", "Subscriber"]

BLOCK_MS = 500  # how long one XREAD waits; bounds how late a stop is noticed
RETRY_SECONDS = 1.0  # how long the thread waits before trying an unreachable log again
QUEUE_LIMIT = 100  # batches a slow page may fall behind before it is told to reload


class Subscriber:
    """One open stream: batches of entries, delivered on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_LIMIT)

    def offer(self, message: dict[str, Any] | None) -> None:
        """Called from the tail thread: hand `message` (None: the end) to the loop."""

        def put() -> None:
            if self.queue.full():  # the page fell behind: it reloads everything
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                message_ = {"reload": True} if message is not None else None
                self.queue.put_nowait(message_)
                return
            self.queue.put_nowait(message)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens
            self.loop.call_soon_threadsafe(put)


def _describe(entry: LogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.event.at,
        "type": tag_of(entry.event),
        "task_id": getattr(entry.event, "task_id", None),
        "details": details(entry.event, skip_task=True),
    }


class LiveFleet:
    """The fleet state at the end of the log, folded forward as the log grows."""

    def __init__(self, store: EventStore, replayer: Callable[[], FleetState] | None = None):
        self.store = store
        self._replay = replayer or (lambda: replay(store)[0])
        self._lock = threading.Lock()
        self._state = FleetState()
        self._loaded = False
        self._subscribers: set[Subscriber] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.log: Any = get_logger("forge.web")

    def start(self) -> None:
        """Replay the log, then follow it in a thread."""
        self._load()
        self._thread = threading.Thread(target=self._run, name="forge-web-tail", daemon=True)
        self._thread.start()

    def end_streams(self) -> None:
        """Stop following the log and end every open stream, without waiting (a server that
        is stopping waits for its open responses to end)."""
        self._stop.set()
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(None)

    def stop(self) -> None:
        """End every open stream and wait for the thread that follows the log."""
        self.end_streams()
        if self._thread is not None:
            self._thread.join(timeout=BLOCK_MS / 1000 * 4)

    def _load(self) -> None:
        state = self._replay()
        with self._lock:
            self._state = state
            self._loaded = True

    def read(self, reader: Callable[[FleetState], Any]) -> Any:
        """`reader(state)` under the lock, so it sees no half-folded page."""
        with self._lock:
            return reader(self._state)

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        subscriber = Subscriber(loop)
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._loaded:
                    self._load()
                    self._publish({"reload": True})
                self._follow()
            except ForgeError as e:  # the log is unreachable: wait, then start over
                self.log.warning("cannot read the log; retrying", error=str(e))
                with self._lock:
                    self._loaded = False
                self._stop.wait(RETRY_SECONDS)

    def _follow(self) -> None:
        with self._lock:
            after = self._state.position or "0-0"
        for entry in self.store.tail(after=after, block_ms=BLOCK_MS, stop=self._stop):
            self._fold([entry])

    def _fold(self, batch: list[LogEntry]) -> None:
        with self._lock:
            apply_entries(self._state, [(e.id, 0, e.event) for e in batch])
            position = self._state.position
            subscribers = list(self._subscribers)
        message = {"position": position, "entries": [_describe(e) for e in batch[-50:]]}
        for subscriber in subscribers:
            subscriber.offer(message)

    def _publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(message)
