"""The tail reader: one thread blocked in XREAD on the log that wakes the orchestrator.

It hands over the entries it read, decoded, with the position they follow; the orchestrator
applies those after its own position if they cover it, and otherwise reads from its own
position itself, so entries are always applied in log order and never twice. Entries the
orchestrator has applied already (its own appends, and others' that came back with them) are
neither decoded nor handed over: the tail reads the orchestrator's position first (in a fleet,
once an append under way has come back with its entries: `Fleet._settled`). While the
log grows only by the orchestrator's own appends, a wake-up reads one entry (enough to tell);
once others append, it reads all there is, until a read brings only the orchestrator's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pykka
import structlog

from actors.messages import LogAdvanced
from actors.scheduler import Teller
from events.codec import decode_entry
from events.errors import StoreError
from events.store import EventStore

__all__ = ["LogTail"]

_MOST = 10_000  # entries one read takes at most


class LogTail:
    def __init__(
        self,
        store: EventStore,
        target: Teller,
        after: str,
        block_ms: int = 500,
        applied: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.target = target
        self.after = after
        # how far the target has applied the log (it reads what it appends with the append)
        self.applied = applied or (lambda: "0-0")
        self.block_ms = block_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forge-tail", daemon=True)
        self._log: Any = structlog.get_logger("actors.tail")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.block_ms / 1000 + 2)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._follow()
        except pykka.ActorDeadError:
            pass  # the orchestrator has gone: the daemon sees it and restarts the fleet
        except Exception:
            self._log.exception("tail reader failed")  # the daemon sees it dead

    def _follow(self) -> None:
        last = self.after
        count = _MOST
        while not self._stop.is_set():
            applied = self.applied()
            if _key(applied) > _key(last):
                last = applied  # the target has it all already: no need to read it
            try:
                raw = self.store.read_raw(last, count, self.block_ms)
            except (StoreError, OSError) as e:
                self._log.warning("tail read failed; retrying", error=str(e))
                self._stop.wait(0.5)
                continue
            except Exception as e:  # a reply it cannot make sense of: let the owner read
                self._log.warning("tail read failed", error=f"{type(e).__name__}: {e}")
                self.target.tell(LogAdvanced("", "", []))
                self._stop.wait(0.5)
                continue
            if not raw:
                continue
            after, last = last, raw[-1][0]
            applied = self.applied()
            if _key(last) <= _key(applied):
                count = 1  # the target's own appends (it applied them with the append)
                continue
            count = _MOST
            news = [(i, fields) for i, fields in raw if _key(i) > _key(applied)]
            if len(news) < len(raw):
                after = raw[len(raw) - len(news) - 1][0]
            try:
                decoded = [(i, decode_entry(fields)) for i, fields in news]
            except Exception:  # UndecodableEvent, or worse: a foreign entry
                decoded = []  # the orchestrator reads (and quarantines) them itself
                after = ""
            self.target.tell(LogAdvanced(last, after, decoded))


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms or 0), int(seq or 0)
