"""Consuming the log from another program, through a Redis consumer group.

Guarantees and how to use them::

    consumer = GroupConsumer(store, group="billing", name="billing-1")
    consumer.run(handle, stop=stop_event)  # or: for d in consumer.read(): ...; consumer.ack(d.id)

* at-least-once: an entry stays pending until `ack`; a handler that raises leaves it pending, and
  it is delivered again, so handlers must be idempotent;
* resume: a restarted consumer with the same name first re-reads its own pending entries, then
  continues after the last entry the group delivered;
* a dead consumer's pending entries are claimed (`XAUTOCLAIM`) by any live one after
  `min_idle_ms`;
* an entry delivered more than `max_deliveries` times (or that cannot be decoded) is copied to the
  group's dead-letter stream (`Keys.dead_letters(group)`) and acknowledged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import redis

from events.codec import decode_entry
from events.errors import UndecodableEvent
from events.store import EventStore, redis_errors
from events.types import Event

__all__ = ["Delivery", "GroupConsumer"]


class Delivery(NamedTuple):
    """One entry handed to a consumer, and how many times the group has delivered it."""

    id: str
    event: Event
    deliveries: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GroupConsumer:
    """A named member of a consumer group on one namespace's log."""

    def __init__(
        self,
        store: EventStore,
        group: str,
        name: str,
        *,
        start: str = "0",
        min_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        count: int = 100,
    ) -> None:
        self.store = store
        self.client = store.client
        self.group = group
        self.name = name
        self.min_idle_ms = min_idle_ms
        self.max_deliveries = max_deliveries
        self.count = count
        self.log_key = store.keys.log
        self.dead_key = store.keys.dead_letters(group)
        self._check_own_pending = True
        self._ensure_group(start)

    def _ensure_group(self, start: str) -> None:
        with redis_errors("create consumer group"):
            try:
                self.client.xgroup_create(self.log_key, self.group, id=start, mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    # -- reading -----------------------------------------------------------------------

    def read(self, block_ms: int = 1000) -> list[Delivery]:
        """The next deliveries: own pending entries first (after a restart or a failure), then
        abandoned entries of dead consumers, then new ones (blocking up to `block_ms`)."""
        while self._check_own_pending:
            own, raw_count = self._read_group("0", None)
            if own:
                return own
            if raw_count == 0:  # whatever was pending went to the dead-letter stream
                self._check_own_pending = False
        claimed = self.claim_abandoned()
        if claimed:
            return claimed
        return self._read_group(">", block_ms)[0]

    def _read_group(self, position: str, block_ms: int | None) -> tuple[list[Delivery], int]:
        with redis_errors("read group"):
            reply: Any = self.client.xreadgroup(
                self.group, self.name, {self.log_key: position}, count=self.count, block=block_ms
            )
        raw = [(i, f) for _key, entries in reply or () for i, f in entries if f]
        return self._deliveries(raw), len(raw)

    def claim_abandoned(self) -> list[Delivery]:
        """Take over entries other consumers left pending for longer than `min_idle_ms`."""
        with redis_errors("claim"):
            reply: Any = self.client.xautoclaim(
                self.log_key, self.group, self.name, self.min_idle_ms, "0-0", count=self.count
            )
        return self._deliveries([(i, f) for i, f in reply[1] if f])

    def _deliveries(self, raw: list[tuple[Any, Any]]) -> list[Delivery]:
        if not raw:
            return []
        ids = [_text(i) for i, _ in raw]
        counts = self._delivery_counts(ids)
        out: list[Delivery] = []
        for sid, (_, fields) in zip(ids, raw, strict=True):
            deliveries = counts.get(sid, 1)
            if deliveries > self.max_deliveries:
                self._dead_letter(sid, fields, f"delivered {deliveries} times")
                continue
            try:
                event = decode_entry(fields)
            except UndecodableEvent as e:
                self._dead_letter(sid, fields, str(e))
                continue
            out.append(Delivery(sid, event, deliveries))
        return out

    def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        with redis_errors("pending"):
            pending: Any = self.client.xpending_range(
                self.log_key, self.group, min=ids[0], max=ids[-1], count=len(ids) * 2 + 10
            )
        return {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}

    def _dead_letter(self, sid: str, fields: Any, reason: str) -> None:
        with redis_errors("dead-letter"):
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(self.dead_key, {**fields, b"origin": sid, b"reason": reason})
            pipe.xack(self.log_key, self.group, sid)
            pipe.execute()

    def dead_letter(self, entry_id: str, reason: str) -> bool:
        """Give up on a delivered entry: copy it to the dead-letter stream with `reason` and
        acknowledge it; False if the log no longer holds it (then it is only acknowledged)."""
        with redis_errors("read entry"):
            found: Any = self.client.xrange(self.log_key, entry_id, entry_id)
        if not found:
            self.ack(entry_id)
            return False
        self._dead_letter(entry_id, found[0][1], reason)
        return True

    def redeliver_pending(self) -> None:
        """Deliver this consumer's unacknowledged entries again on the next `read`."""
        self._check_own_pending = True

    # -- acknowledging, running --------------------------------------------------------

    def ack(self, *ids: str) -> int:
        """Acknowledge handled entries; returns how many were pending."""
        if not ids:
            return 0
        with redis_errors("ack"):
            return int(self.client.xack(self.log_key, self.group, *ids))

    def dead_letters(self) -> list[tuple[str, dict[bytes, bytes]]]:
        """The group's dead-letter stream: (id, fields with `origin` and `reason`)."""
        with redis_errors("read dead letters"):
            raw: Any = self.client.xrange(self.dead_key)
        return [(_text(i), f) for i, f in raw]

    def run(
        self,
        handler: Callable[[Delivery], None],
        stop: threading.Event,
        block_ms: int = 1000,
    ) -> None:
        """Deliver entries to `handler` until `stop` is set, acknowledging each that it handled
        without raising; one that raises stays pending and is delivered again later."""
        while not stop.is_set():
            for delivery in self.read(block_ms):
                try:
                    handler(delivery)
                except Exception:  # any failure means "not handled": redeliver
                    self._check_own_pending = True
                    continue
                self.ack(delivery.id)
