"""The fleet-state projection: `apply(state, event)`, a pure fold over the log.

`apply` mutates `state` in place and returns it. It is deterministic: no I/O, no clock, no
randomness; every time it records comes from the event's own `at`. An event whose transition is
illegal (see `events.transitions`) is ignored and counted in `state.anomalies`, never raised,
so a replay cannot crash on a surprising log. `apply` does not know stream ids: the reader sets
`state.position` after applying an entry (or a page of entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from events import types as t
from events.projection_approvals import approval_answered, approval_requested
from events.projection_fleet import (
    Handler,
    _agent_request,
    _agent_status,
    _breaker_closed,
    _breaker_half_opened,
    _breaker_opened,
    _budget_exhausted,
    _budget_limit_set,
    _busy,
    _daemon_started,
    _daemon_stopped,
    _lease_lost,
    _lease_taken,
    _resumed,
    _spawned,
    _stop_requested,
)
from events.projection_tasks import (
    _assigned,
    _cancel_requested,
    _cancelled,
    _checkpointed,
    _completed,
    _continued,
    _dead_lettered,
    _discarded,
    _failed,
    _merged,
    _permission_denied,
    _progress,
    _queued,
    _retry_requested,
    _retry_scheduled,
    _started,
    _submitted,
    _usage,
)
from events.state import FleetState, to_builtins

__all__ = ["FleetState", "apply", "apply_all", "apply_entries", "to_builtins"]


def apply(state: FleetState, event: t.Event) -> FleetState:
    """Fold one event into `state` (mutated in place) and return it."""
    state.event_count += 1
    state.last_at = event.at
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event)
    return state


def apply_all(state: FleetState, events: Iterable[t.Event]) -> FleetState:
    """Fold many events into `state`, in order."""
    handlers = _HANDLERS
    n = 0
    at = state.last_at
    for event in events:
        n += 1
        at = event.at
        handler = handlers.get(type(event))
        if handler is not None:
            handler(state, event)
    state.event_count += n
    state.last_at = at
    return state


def apply_entries(state: FleetState, entries: Sequence[tuple[str, int, t.Event]]) -> FleetState:
    """Fold a page of (stream id, schema version, event) entries and advance `position`.

    The replay hot loop: one dict lookup and one call per event."""
    if not entries:
        return state
    handlers = _HANDLERS
    for _, _, event in entries:
        handler = handlers.get(type(event))
        if handler is not None:
            handler(state, event)
    state.event_count += len(entries)
    state.last_at = entries[-1][2].at
    state.position = entries[-1][0]
    return state


_HANDLERS: dict[type[t.Event], Handler] = {
    t.TaskSubmitted: _submitted,
    t.TaskQueued: _queued,
    t.TaskAssigned: _assigned,
    t.TaskStarted: _started,
    t.TaskProgress: _progress,
    t.TaskUsage: _usage,
    t.TaskPermissionDenied: _permission_denied,
    t.TaskCheckpointed: _checkpointed,
    t.TaskCompleted: _completed,
    t.TaskFailed: _failed,
    t.TaskRetryScheduled: _retry_scheduled,
    t.TaskDeadLettered: _dead_lettered,
    t.TaskCancelled: _cancelled,
    t.TaskContinued: _continued,
    t.TaskMerged: _merged,
    t.TaskDiscarded: _discarded,
    t.TaskCancelRequested: _cancel_requested,
    t.TaskRetryRequested: _retry_requested,
    t.AgentSpawnRequested: _agent_request,
    t.AgentKillRequested: _agent_request,
    t.AgentPauseRequested: _agent_request,
    t.AgentResumeRequested: _agent_request,
    t.DaemonStopRequested: _stop_requested,
    t.AgentSpawned: _spawned,
    t.AgentReady: _agent_status("ready"),
    t.AgentBusy: _busy,
    t.AgentIdle: _agent_status("idle", clear_task=True),
    t.AgentUnhealthy: _agent_status("unhealthy", reason=True),
    t.AgentCrashed: _agent_status("crashed", clear_task=True, reason=True),
    t.AgentPaused: _agent_status("paused"),
    t.AgentResumed: _resumed,
    t.AgentTerminated: _agent_status("terminated", clear_task=True, reason=True),
    t.BreakerOpened: _breaker_opened,
    t.BreakerHalfOpened: _breaker_half_opened,
    t.BreakerClosed: _breaker_closed,
    t.BudgetExhausted: _budget_exhausted,
    t.BudgetLimitSet: _budget_limit_set,
    t.DaemonStarted: _daemon_started,
    t.DaemonStopped: _daemon_stopped,
    t.NodeLeaseTaken: _lease_taken,
    t.NodeLeaseLost: _lease_lost,
    t.ApprovalRequested: approval_requested,
    t.ApprovalAnswered: approval_answered,
}
