"""The arguments of the append script (`lua/append.lua`): how events, and groups of them with
an optional expectation on one task, are encoded for it.

Each event becomes one record whose kind says what the script does with the task index: 'e'
touches no task, 's' submits one, 't' moves one with the transition rule of
`events.transitions` (its allowed source states, target, whether the attempt must match)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import msgspec

from events.errors import StoreError
from events.transitions import ABSENT, EVICTED_STATES, TRANSITIONS
from events.types import Event, TaskAssigned, TaskContinued, TaskQueued, TaskSubmitted

__all__ = ["NEW_TASKS", "Records", "group_args"]

NEW_TASKS = "*"  # the `task_id` of a batch appended only if every task it submits is new

_DEP_SEPARATOR = "\x1f"
_ENCODER = msgspec.msgpack.Encoder()


class Records(NamedTuple):
    """Events appended together: always (no `task_id`), or only if task `task_id`'s index
    entry matches `expect` and the first event's transition is legal from it (the events
    after the first must not touch a task)."""

    events: Sequence[Event]
    task_id: str | None = None
    expect: Mapping[str, Any] = {}


def _sources(sources: frozenset[str]) -> str:
    return "|" + "|".join(sorted("-" if s == ABSENT else s for s in sources)) + "|"


_RULES: dict[type[Event], tuple[str, str, bool]] = {
    cls: (_sources(rule.sources), rule.target or "", rule.match_attempt)
    for cls, rule in TRANSITIONS.items()
    if cls is not TaskSubmitted
}
# reopening a finished task is legal only with its state to restore
_UNRESTORED = {
    cls: _sources(TRANSITIONS[cls].sources - EVICTED_STATES) for cls in (TaskQueued, TaskContinued)
}
# events that never change the index are plain XADDs unless a conditional append checks them
_INDEX_NEUTRAL = frozenset(
    cls for cls, rule in TRANSITIONS.items() if rule.target is None and cls is not TaskAssigned
)


def _record(event: Event, out: list[Any], checked: bool = False) -> None:
    """Append the `append.lua` record of one event to `out` (`checked`: a conditional append,
    which must check the event's transition even if it changes nothing)."""
    cls = type(event)
    data = _ENCODER.encode(event)
    version = cls.schema
    rule = _RULES.get(cls) if checked or cls not in _INDEX_NEUTRAL else None
    if rule is not None:
        sources, target, match = rule
        e: Any = event
        if cls in _UNRESTORED and e.restore is None:
            sources = _UNRESTORED[cls]  # see events.transitions.legal_sources
        assigned = cls is TaskAssigned
        out += (
            "t",
            data,
            version,
            e.task_id,
            sources,
            target,
            e.attempt if match else "",
            e.attempt if assigned else "",
            e.epoch if assigned else "",
        )
    elif cls is TaskSubmitted:
        s: Any = event
        key = s.spec.idempotency_key or ""
        out += ("s", data, version, s.task_id, _DEP_SEPARATOR.join(s.spec.after), key)
    else:
        out += ("e", data, version)


def group_args(group: Records, out: list[Any]) -> None:
    """Append the `append.lua` header and records of one group to `out`."""
    events = group.events
    if group.task_id is None or group.task_id == NEW_TASKS:
        out += (group.task_id or "", "", "", "", len(events))
        for event in events:
            _record(event, out)
        return
    if not events:
        raise StoreError("a conditional append needs an event")
    if any(type(other) in TRANSITIONS for other in events[1:]):
        raise StoreError("extra events of a conditional append must not touch a task")
    states = group.expect.get("state")
    if isinstance(states, str):
        states = (states,)
    attempt, epoch = group.expect.get("attempt"), group.expect.get("epoch")
    out += (
        group.task_id,
        _sources(frozenset(states)) if states is not None else "",
        "" if attempt is None else attempt,
        "" if epoch is None else epoch,
        len(events),
    )
    _record(events[0], out, checked=True)
    for other in events[1:]:
        _record(other, out)
