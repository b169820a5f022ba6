"""The Ledger: the orchestrator's copy of the log — the fleet state, how far into the log it is,
and every way of writing to the log and reading it back.

The state changes *only* by applying log entries, in log order. After each append the ledger
applies its own events directly when nothing else was appended since its position (the log
then holds exactly what it applied), else it catches up by reading, so events written by
others (the CLI's submissions and control requests, the breakers) interleave exactly as a
replay will see them. While `live`, each applied event is handed to `react`, which may append
in turn (those appends are applied before the outer ones return).

Conditional appends are fenced by the append script's index (task state, attempt, daemon
epoch); a record whose expectation no longer holds is refused and the ledger catches up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from actors.clock import Clock
from events import types as t
from events.errors import TaskConflict
from events.projection import apply
from events.state import FleetState
from events.store import EventStore

__all__ = ["Conditional", "Ledger"]

_READ_PAGE = 5000


class Conditional(NamedTuple):
    """One conditional record: `event` is appended only if task `task_id`'s index entry matches
    `expect` (see `EventStore.append_if`); `extra` events, which touch no task, go with it."""

    task_id: str
    expect: Mapping[str, Any]
    event: t.Event
    extra: Sequence[t.Event] = ()


class Ledger:
    def __init__(
        self,
        store: EventStore,
        state: FleetState,
        clock: Clock,
        *,
        react: Callable[[t.Event], None],
        checkpoint: Callable[[FleetState], None] | None = None,
        snapshot_every: int = 1000,
        log: Any = None,
    ) -> None:
        self.store = store
        self.state = state
        self.clock = clock
        self.react = react
        self.live = False  # false while replaying history: what others asked is not re-acted
        self._checkpoint = checkpoint
        self._snapshot_every = snapshot_every
        self._snapshot_at = state.event_count
        self.log: Any = log if log is not None else structlog.get_logger("actors.ledger")

    @property
    def position(self) -> str:
        """The id of the last log entry applied to the state."""
        return self.state.position

    def now(self) -> float:
        """The time to record in the events being decided."""
        return self.clock.now()

    # -- writing ------------------------------------------------------------------------

    def append(self, events: Sequence[t.Event]) -> None:
        """Append `events` in order, atomically, and apply them (nothing for an empty list)."""
        if events:
            prev, ids = self.store.append_after(events)
            self._absorb(prev, events, ids)

    def append_if(self, *records: Conditional) -> list[bool]:
        """Append each record whose expectation holds; for each record, whether it was
        appended (a refused one leaves the state caught up with the log). Records are
        independent: one refused does not hold back the others. Today each is one round trip;
        the append script can take several, which is how appends will be batched."""
        return [self._append_one(record) for record in records]

    def _append_one(self, record: Conditional) -> bool:
        task_id, expect, event, extra = record
        try:
            prev, ids = self.store.append_if_after(task_id, expect, event, *extra)
        except TaskConflict as conflict:
            self.catch_up()
            if conflict.current is None and self._adopt_into_index(task_id):
                return self._append_one(record)
            self.log.info("conditional append refused", task_id=task_id, reason=str(conflict))
            return False
        self._absorb(prev, [event, *extra], ids)
        return True

    def _adopt_into_index(self, task_id: str) -> bool:
        """A task the log knows and the index does not (appended without the append script):
        derive its index entry from the log (which we have just caught up with), once."""
        task = self.state.tasks.get(task_id)
        if task is None or not self.store.adopt_into_index(
            task_id, task.state, task.attempt, task.epoch
        ):
            return False
        self.log.warning("task missing from the index: entry derived from the log", task_id=task_id)
        return True

    def _absorb(self, prev: str, events: Sequence[t.Event], ids: list[str]) -> None:
        """Bring our own appended events into the state: directly when nothing else was
        appended since our position (the log holds exactly what we applied), else by reading."""
        if prev != self.state.position:
            self.catch_up()
            return
        for entry_id, event in zip(ids, events, strict=True):
            self._apply_entry(entry_id, event)
        self._maybe_checkpoint()

    # -- reading ------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Apply every entry after our position."""
        while True:
            entries = self.store.read_from(self.state.position, _READ_PAGE)
            for entry in entries:
                if _stream_key(entry.id) <= _stream_key(self.state.position):
                    continue  # a reaction's own catch-up (nested) has applied it already
                self._apply_entry(entry.id, entry.event)
            if len(entries) < _READ_PAGE:
                break
        self._maybe_checkpoint()

    def advance(self, last_id: str, after: str, entries: Iterable[tuple[str, Any]]) -> None:
        """The tail reader saw the log grow to `last_id`, with `entries` following `after`:
        apply them if they follow our position, else read from our position ourselves."""
        if not last_id:
            self.catch_up()  # the tail could not tell how far the log goes
        elif _stream_key(last_id) <= _stream_key(self.state.position):
            pass  # our own appends, applied already
        elif after == self.state.position and entries:
            for entry_id, event in entries:
                if _stream_key(entry_id) > _stream_key(self.state.position):
                    self._apply_entry(entry_id, event)  # (else: applied, nested)
            self._maybe_checkpoint()
        else:
            self.catch_up()

    def _apply_entry(self, entry_id: str, event: t.Event) -> None:
        apply(self.state, event)
        self.state.position = entry_id
        if self.live:
            self.react(event)

    # -- snapshots ----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Save a snapshot of the state now (the daemon is stopping)."""
        if self._checkpoint is not None:
            self._checkpoint(self.state)
            self._snapshot_at = self.state.event_count

    def _maybe_checkpoint(self) -> None:
        if self._checkpoint and self.state.event_count - self._snapshot_at >= (
            self._snapshot_every
        ):
            self._snapshot_at = self.state.event_count
            self._checkpoint(self.state)


def _stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
