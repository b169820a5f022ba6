"""The tail reader: one thread blocked in XREAD on the log that wakes the orchestrator.

It hands over the entries it read, decoded, with the position they follow; the orchestrator
applies them directly if that is its own position, and otherwise reads from its own position
itself, so entries are always applied in log order and never twice.
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import redis
import structlog

from actors.messages import LogAdvanced
from actors.scheduler import Teller
from events.codec import decode_entry
from events.store import EventStore

__all__ = ["LogTail"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LogTail:
    def __init__(self, store: EventStore, target: Teller, after: str, block_ms: int = 500) -> None:
        self.store = store
        self.target = target
        self.after = after
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
        key = self.store.keys.log
        client = self.store.client
        while not self._stop.is_set():
            try:
                reply: Any = client.xread({key: last}, count=10_000, block=self.block_ms)
            except (redis.RedisError, OSError) as e:
                self._log.warning("tail read failed; retrying", error=str(e))
                self._stop.wait(0.5)
                continue
            except Exception as e:  # a reply it cannot make sense of: let the owner read
                self._log.warning("tail read failed", error=f"{type(e).__name__}: {e}")
                self.target.tell(LogAdvanced("", "", []))
                self._stop.wait(0.5)
                continue
            for _key, entries in reply or ():
                if not entries:
                    continue
                after = last
                newest = entries[-1][0]
                last = _text(newest)
                try:
                    decoded = [(_text(i), decode_entry(fields)) for i, fields in entries]
                except Exception:  # UndecodableEvent, or worse: a foreign entry
                    decoded = []  # the orchestrator reads (and quarantines) them itself
                    after = ""
                self.target.tell(LogAdvanced(last, after, decoded))
