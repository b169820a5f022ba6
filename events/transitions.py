"""The task state machine: which event may move a task from which state to which.

One table, two users: the projection (`events.projection.apply`) and the store's derived index
(the Lua scripts receive each event's allowed source states from here), so the index and the
projection can never disagree about a transition. An event whose transition is not allowed is
still a fact in the log, but it changes nothing: the projection counts it as an anomaly.

States: pending (waiting for dependencies), queued, assigned, running, retry_wait, and the
terminal completed, failed, dead_lettered, cancelled. `failed` is terminal unless a retry or a
dead-lettering follows. `ABSENT` is the state of a task id that was never submitted.
"""

from __future__ import annotations

from typing import NamedTuple

from events.types import (
    Event,
    TaskAssigned,
    TaskCancelled,
    TaskCheckpointed,
    TaskCompleted,
    TaskContinued,
    TaskDeadLettered,
    TaskFailed,
    TaskPermissionDenied,
    TaskProgress,
    TaskQueued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskUsage,
)

__all__ = [
    "ABSENT",
    "ACTIVE_STATES",
    "EVICTED_STATES",
    "TASK_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Transition",
    "legal_sources",
]

ABSENT = ""
TASK_STATES = (
    "pending",
    "queued",
    "assigned",
    "running",
    "retry_wait",
    "completed",
    "failed",
    "dead_lettered",
    "cancelled",
)
TERMINAL_STATES = frozenset({"completed", "failed", "dead_lettered", "cancelled"})
ACTIVE_STATES = frozenset({"assigned", "running"})
# A task that reaches one of these leaves the projection's hot state (see
# `events.projection_eviction`); `failed` stays hot: a retry or dead-lettering may follow.
EVICTED_STATES = frozenset({"completed", "dead_lettered", "cancelled"})
_NOT_DONE = frozenset({"pending", "queued", "assigned", "running", "retry_wait"})


class Transition(NamedTuple):
    """Allowed source states, the target state (None: unchanged), and whether the event's
    `attempt` must equal the task's current attempt."""

    sources: frozenset[str]
    target: str | None
    match_attempt: bool


TRANSITIONS: dict[type[Event], Transition] = {
    # target "pending" or "queued" depending on whether every dependency has completed
    TaskSubmitted: Transition(frozenset({ABSENT}), "queued", False),
    TaskQueued: Transition(
        frozenset({"pending", "retry_wait", "assigned", "failed", "dead_lettered", "cancelled"}),
        "queued",
        False,
    ),
    TaskAssigned: Transition(frozenset({"queued"}), "assigned", False),
    TaskStarted: Transition(frozenset({"assigned"}), "running", True),
    TaskProgress: Transition(frozenset(TASK_STATES), None, True),
    TaskUsage: Transition(frozenset(TASK_STATES), None, True),
    TaskPermissionDenied: Transition(frozenset(TASK_STATES), None, True),
    TaskCheckpointed: Transition(frozenset(TASK_STATES), None, True),
    TaskCompleted: Transition(ACTIVE_STATES, "completed", True),
    TaskFailed: Transition(frozenset({"pending", "queued", "assigned", "running"}), "failed", True),
    TaskRetryScheduled: Transition(frozenset({"failed"}), "retry_wait", False),
    TaskDeadLettered: Transition(
        frozenset({"failed", "retry_wait", "queued", "pending"}), "dead_lettered", False
    ),
    TaskCancelled: Transition(_NOT_DONE, "cancelled", False),
    # `forge task continue`: an ended task runs again, resuming its session
    TaskContinued: Transition(TERMINAL_STATES, "queued", False),
}
"""The task events and their transitions; other events do not touch task state."""

_REOPENING = frozenset(cls for cls in TRANSITIONS if issubclass(cls, TaskQueued | TaskContinued))
"""The events that may reopen an evicted task. A set looked up by the event's exact type (which
`TRANSITIONS` needs anyway) instead of an isinstance test: that was a sixth of a replay's time
in the client (it built a new union and called the metaclass's instance check every time)."""


def legal_sources(event: Event) -> frozenset[str]:
    """The states `event` may move its task from. Reopening a task that left the hot state
    (`task.queued`, `task.continued` from an `EVICTED_STATES` state) is legal only when the
    event carries the task's state to restore (`restore`)."""
    rule = TRANSITIONS[type(event)]
    if type(event) in _REOPENING and event.restore is None:  # type: ignore[attr-defined]
        return rule.sources - EVICTED_STATES
    return rule.sources
