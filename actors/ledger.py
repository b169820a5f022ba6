"""The Ledger: the orchestrator's copy of the log — the fleet state, how far into the log it is,
and every way of writing to the log and reading it back.

The state changes *only* by applying log entries, in log order. Every append is one call of
the append script, which sends back what others appended since the ledger's position (the
CLI's submissions and control requests, the breakers); the ledger applies those first, then
its own events, so they interleave exactly as a replay will see them, without reading the log
again (it reads only when too much came in between). While `live`, each applied event is
handed to `react`, which may append in turn (those appends are applied before the outer ones
return).

Conditional appends are fenced by the append script's index (task state, attempt, daemon
epoch); many records go in one call, each fenced on its own: a record whose expectation no
longer holds is refused, and refuses no other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from actors.clock import Clock
from events import types as t
from events.errors import TaskConflict
from events.projection import apply
from events.state import FleetState, TaskState
from events.store import Appended, EventStore, Records

__all__ = ["Conditional", "Ledger", "Unconditional"]

_READ_PAGE = 5000


class Conditional(NamedTuple):
    """One conditional record: `event` is appended only if task `task_id`'s index entry matches
    `expect` (see `EventStore.append_if`); `extra` events, which touch no task, go with it."""

    task_id: str
    expect: Mapping[str, Any]
    event: t.Event
    extra: Sequence[t.Event] = ()


class Unconditional(NamedTuple):
    """Events appended as they are, in order among conditional records."""

    events: Sequence[t.Event]


def _group(record: Conditional | Unconditional) -> Records:
    if isinstance(record, Unconditional):
        return Records(record.events)
    return Records((record.event, *record.extra), record.task_id, record.expect)


class Ledger:
    def __init__(
        self,
        store: EventStore,
        state: FleetState,
        clock: Clock,
        *,
        react: Callable[[t.Event], None],
        checkpoint: Callable[[FleetState], None] | None = None,
        applied: Callable[[str, str, t.Event, TaskState | None, bool], None] | None = None,
        snapshot_every: int = 1000,
        log: Any = None,
        appending: threading.RLock | None = None,
    ) -> None:
        self.store = store
        self.state = state
        self.clock = clock
        self.react = react
        self.live = False  # false while replaying history: what others asked is not re-acted
        self._checkpoint = checkpoint
        # told (id before, id, event, the task it ended: final state or None, whether its task
        # was and stays ended) of each entry applied
        self._applied = applied
        self._snapshot_every = snapshot_every
        self._snapshot_at = state.event_count
        # held while an append (or a catch-up) is under way: the tail reader waits for it, so
        # that it does not take the entries an append brings back for news
        self.appending = appending if appending is not None else threading.RLock()
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
            self.append_if(Unconditional(events))

    def append_if(self, *records: Conditional | Unconditional) -> list[bool]:
        """Append each record whose expectation holds, all in one round trip, and apply them;
        for each record, whether it was appended (an `Unconditional` one always is). Records
        are independent: one refused does not hold back the others. The state is caught up
        with the log either way: what others appended before comes back with the append."""
        groups = [_group(record) for record in records]
        if not groups:
            return []
        with self.appending:
            appended = self.store.append_groups(groups, after=self.state.position)
            self._absorb(appended, groups)
        done = [not isinstance(result, TaskConflict) for result in appended.results]
        for i, result in enumerate(appended.results):
            if not isinstance(result, TaskConflict):
                continue
            task_id = result.task_id
            if result.current is None and self._adopt_into_index(task_id):
                [done[i]] = self.append_if(records[i])
            else:
                self.log.info("conditional append refused", task_id=task_id, reason=str(result))
        return done

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

    def _absorb(self, appended: Appended, groups: Sequence[Records]) -> None:
        """Bring the log up to our appends into the state, in log order: what others appended
        since our position (sent back with the append) and then our own events; by reading
        when the append could not send all of the former back."""
        if appended.entries is None:
            self.catch_up()
            return
        ours = [
            (entry_id, event)
            for group, ids in zip(groups, appended.results, strict=True)
            if not isinstance(ids, TaskConflict)
            for entry_id, event in zip(ids, group.events, strict=True)
        ]
        for entry_id, event in [*appended.entries, *ours]:
            if _stream_key(entry_id) > _stream_key(self.state.position):
                self._apply_entry(entry_id, event)  # (else: a reaction's append applied it)
        self._maybe_checkpoint()

    # -- reading ------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Apply every entry after our position."""
        with self.appending:
            while True:
                entries = self.store.read_from(self.state.position, _READ_PAGE)
                for entry in entries:
                    if _stream_key(entry.id) <= _stream_key(self.state.position):
                        continue  # a reaction's own catch-up (nested) has applied it already
                    self._apply_entry(entry.id, entry.event)
                if len(entries) < _READ_PAGE:
                    break
            self._maybe_checkpoint()

    def has_news(self, last_id: str) -> bool:
        """The tail reader's news of the log up to `last_id` holds entries we have not applied
        (or it could not tell how far the log goes)."""
        return not last_id or _stream_key(last_id) > _stream_key(self.state.position)

    def advance(self, last_id: str, after: str, entries: Iterable[tuple[str, Any]]) -> None:
        """The tail reader saw the log grow to `last_id`, with `entries` following `after`:
        apply those after our position if they cover it, else read from it ourselves."""
        if not last_id:
            self.catch_up()  # the tail could not tell how far the log goes
        elif _stream_key(last_id) <= _stream_key(self.state.position):
            pass  # our own appends, applied already
        elif after and entries and _stream_key(after) <= _stream_key(self.state.position):
            for entry_id, event in entries:  # they cover everything after our position
                if _stream_key(entry_id) > _stream_key(self.state.position):
                    self._apply_entry(entry_id, event)  # (else: applied, nested)
            self._maybe_checkpoint()
        else:
            self.catch_up()

    def _apply_entry(self, entry_id: str, event: t.Event) -> None:
        before = self.state.position
        task_id = getattr(event, "task_id", None)
        task = self.state.tasks.get(task_id) if isinstance(task_id, str) else None
        apply(self.state, event)
        self.state.position = entry_id
        if self._applied is not None:
            hot = isinstance(task_id, str) and task_id in self.state.tasks
            ended = None if hot or task is None else task
            self._applied(before, entry_id, event, ended, not hot and task is None)
        if self.live:
            self.react(event)

    # -- snapshots ----------------------------------------------------------------------

    def checkpoint(self) -> None:
        """Save a snapshot of the state now (the daemon is stopping)."""
        if self._checkpoint is not None:
            self._checkpoint(self.state)
            self._snapshot_at = self.state.event_count

    def _maybe_checkpoint(self) -> None:
        # every `snapshot_every` events, or every N events while N tasks are live, or every
        # F/10 events while F finished tasks are in `finished` (a snapshot encodes them all; a
        # finished entry costs a tenth of a live task): a snapshot's cost per event stays
        # bounded, and a restart folds a tail no longer than what its snapshot holds
        state = self.state
        due = max(self._snapshot_every, len(state.tasks), len(state.finished) // 10)
        if self._checkpoint and state.event_count - self._snapshot_at >= due:
            self._snapshot_at = state.event_count
            self._checkpoint(state)


def _stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
