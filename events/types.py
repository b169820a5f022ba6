"""The event catalogue: every state change of the fleet, as a frozen msgspec Struct.

Rules that keep a stored log readable for ever:

* each event has an explicit, stable `tag` (the `type` field on the wire), never the class name;
* a new field gets a default; a field's type never changes;
* a breaking change bumps the class-level `schema` and registers an upcaster (`events.codec`);
* every event carries `at`, the writer's wall-clock time, so replay never reads a clock.

Events are grouped by subject: tasks, control requests (appended by the CLI for the daemon to act
on), agents, circuit breakers, budget, daemon and node leases; the base class and the task
definition are in `events.event_base`, the events of the user's review (refused tool calls,
approvals, landing) in `events.review_events`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from events.event_base import MAX_TIMESTAMP, Event, Limits, Priority, TaskDefinition, Timestamp
from events.review_events import (
    ApprovalAnswered,
    ApprovalRequested,
    TaskContinued,
    TaskDiscarded,
    TaskMerged,
    TaskPermissionDenied,
)

__all__ = [
    "CONTROL_EVENTS",
    "EVENT_TYPES",
    "MAX_TIMESTAMP",
    "AgentBusy",
    "AgentCrashed",
    "AgentIdle",
    "AgentKillRequested",
    "AgentPauseRequested",
    "AgentPaused",
    "AgentReady",
    "AgentResumeRequested",
    "AgentResumed",
    "AgentSpawnRequested",
    "AgentSpawned",
    "AgentTerminated",
    "AgentUnhealthy",
    "AnyEvent",
    "ApprovalAnswered",
    "ApprovalRequested",
    "BreakerClosed",
    "BreakerHalfOpened",
    "BreakerOpened",
    "BudgetExhausted",
    "BudgetLimitSet",
    "DaemonStarted",
    "DaemonStopRequested",
    "DaemonStopped",
    "Event",
    "Limits",
    "NodeLeaseLost",
    "NodeLeaseTaken",
    "Priority",
    "TaskAssigned",
    "TaskCancelRequested",
    "TaskCancelled",
    "TaskCheckpointed",
    "TaskCompleted",
    "TaskContinued",
    "TaskDeadLettered",
    "TaskDefinition",
    "TaskDiscarded",
    "TaskFailed",
    "TaskMerged",
    "TaskPermissionDenied",
    "TaskProgress",
    "TaskQueued",
    "TaskRetryRequested",
    "TaskRetryScheduled",
    "TaskStarted",
    "TaskSubmitted",
    "TaskUsage",
    "Timestamp",
]

# -- tasks ---------------------------------------------------------------------------------


class TaskSubmitted(Event, tag="task.submitted", frozen=True, kw_only=True):
    task_id: str
    spec: TaskDefinition


class TaskQueued(Event, tag="task.queued", frozen=True, kw_only=True):
    task_id: str
    reason: str = "submitted"  # submitted|dependencies_met|retry_due|requeued|lost|manual_retry
    # a finished task that left the hot state comes back with its state as its own events
    # made it (read through the per-task index); see `events.task_index`
    restore: dict[str, Any] | None = None


class TaskAssigned(Event, tag="task.assigned", frozen=True, kw_only=True):
    task_id: str
    attempt: int
    agent_id: str
    epoch: int  # the assigning daemon's epoch: the fencing token of this attempt
    node_id: str = ""


class TaskStarted(Event, tag="task.started", frozen=True, kw_only=True):
    task_id: str
    attempt: int
    agent_id: str
    pid: int | None = None
    create_time: float | None = None  # the process start time, to tell a reused pid apart
    log_path: str | None = None
    session_id: str | None = None
    workspace: str | None = None  # the git worktree the attempt runs in, if the task has a repo
    branch: str | None = None  # that worktree's branch


class TaskProgress(Event, tag="task.progress", frozen=True, kw_only=True):
    task_id: str
    attempt: int
    summary: str


class TaskUsage(Event, tag="task.usage", frozen=True, kw_only=True):
    """Token use and cost of one attempt so far (cumulative for that attempt).

    Schema 2 split v1's `tokens` into input and output tokens and renamed `cost` to `cost_usd`
    (see the upcaster in `events.codec`).
    """

    schema: ClassVar[int] = 2

    task_id: str
    attempt: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class TaskCheckpointed(Event, tag="task.checkpointed", frozen=True, kw_only=True):
    task_id: str
    attempt: int
    session_id: str
    note: str = ""


class TaskCompleted(Event, tag="task.completed", frozen=True, kw_only=True):
    task_id: str
    attempt: int
    agent_id: str
    exit_code: int | None = None
    result: str | None = None
    cost_usd: float = 0.0


class TaskFailed(Event, tag="task.failed", frozen=True, kw_only=True):
    """An attempt failed; `failure` is its class (exit, crash, timeout, api_error, lost, ...)."""

    task_id: str
    attempt: int
    agent_id: str | None = None
    failure: str
    reason: str = ""
    exit_code: int | None = None
    transient: bool = False


class TaskRetryScheduled(Event, tag="task.retry_scheduled", frozen=True, kw_only=True):
    task_id: str
    next_attempt: int
    delay: float
    not_before: float  # wall-clock time before which the retry must not start


class TaskDeadLettered(Event, tag="task.dead_lettered", frozen=True, kw_only=True):
    task_id: str
    attempts: int
    reason: str = ""


class TaskCancelled(Event, tag="task.cancelled", frozen=True, kw_only=True):
    task_id: str
    reason: str = ""


# -- control requests (appended by the CLI, acted on by the daemon) -------------------------


class TaskCancelRequested(Event, tag="task.cancel_requested", frozen=True, kw_only=True):
    task_id: str


class TaskRetryRequested(Event, tag="task.retry_requested", frozen=True, kw_only=True):
    task_id: str


class AgentSpawnRequested(Event, tag="agent.spawn_requested", frozen=True, kw_only=True):
    runtime: str = "shell"
    tags: list[str] = []
    node_id: str | None = None  # the node to spawn it on; None: each running node


class AgentKillRequested(Event, tag="agent.kill_requested", frozen=True, kw_only=True):
    agent_id: str
    force: bool = False


class AgentPauseRequested(Event, tag="agent.pause_requested", frozen=True, kw_only=True):
    agent_id: str


class AgentResumeRequested(Event, tag="agent.resume_requested", frozen=True, kw_only=True):
    agent_id: str


class DaemonStopRequested(Event, tag="daemon.stop_requested", frozen=True, kw_only=True):
    force: bool = False
    node_id: str | None = None  # the node to stop; None: every node of the namespace


# -- agents --------------------------------------------------------------------------------


class AgentSpawned(Event, tag="agent.spawned", frozen=True, kw_only=True):
    agent_id: str
    runtime: str = "shell"
    tags: list[str] = []
    node_id: str = ""


class AgentReady(Event, tag="agent.ready", frozen=True, kw_only=True):
    agent_id: str


class AgentBusy(Event, tag="agent.busy", frozen=True, kw_only=True):
    agent_id: str
    task_id: str
    attempt: int


class AgentIdle(Event, tag="agent.idle", frozen=True, kw_only=True):
    agent_id: str


class AgentUnhealthy(Event, tag="agent.unhealthy", frozen=True, kw_only=True):
    agent_id: str
    reason: str = ""


class AgentCrashed(Event, tag="agent.crashed", frozen=True, kw_only=True):
    agent_id: str
    reason: str = ""


class AgentPaused(Event, tag="agent.paused", frozen=True, kw_only=True):
    agent_id: str


class AgentResumed(Event, tag="agent.resumed", frozen=True, kw_only=True):
    agent_id: str


class AgentTerminated(Event, tag="agent.terminated", frozen=True, kw_only=True):
    agent_id: str
    reason: str = ""


# -- circuit breakers, budget --------------------------------------------------------------


class BreakerOpened(Event, tag="breaker.opened", frozen=True, kw_only=True):
    name: str
    until: float  # wall-clock time at which a half-open probe may be tried
    reason: str = ""
    failures: int = 0


class BreakerHalfOpened(Event, tag="breaker.half_opened", frozen=True, kw_only=True):
    name: str


class BreakerClosed(Event, tag="breaker.closed", frozen=True, kw_only=True):
    name: str


class BudgetExhausted(Event, tag="budget.exhausted", frozen=True, kw_only=True):
    spent_usd: float
    limit_usd: float


# -- daemon and node leases ----------------------------------------------------------------


class DaemonStarted(Event, tag="daemon.started", frozen=True, kw_only=True):
    node_id: str
    epoch: int
    pid: int


class DaemonStopped(Event, tag="daemon.stopped", frozen=True, kw_only=True):
    node_id: str
    epoch: int
    reason: str = ""


class NodeLeaseTaken(Event, tag="node.lease_taken", frozen=True, kw_only=True):
    node_id: str
    epoch: int
    expires_at: float


class NodeLeaseLost(Event, tag="node.lease_lost", frozen=True, kw_only=True):
    node_id: str
    epoch: int
    reason: str = ""


# -- the fleet budget's limit --------------------------------------------------------------


class BudgetLimitSet(Event, tag="budget.limit_set", frozen=True, kw_only=True):
    """The fleet budget a starting daemon enforces (`orchestrator.fleet_budget_usd`; None: no
    limit), recorded when it differs from the one the log holds. The projection judges
    `budget_exhausted` against it, so raising the limit reopens the fleet, lowering it closes it.
    """

    limit_usd: float | None = None


AnyEvent = (
    TaskSubmitted
    | TaskQueued
    | TaskAssigned
    | TaskStarted
    | TaskProgress
    | TaskUsage
    | TaskCheckpointed
    | TaskCompleted
    | TaskFailed
    | TaskRetryScheduled
    | TaskDeadLettered
    | TaskCancelled
    | TaskCancelRequested
    | TaskRetryRequested
    | AgentSpawnRequested
    | AgentKillRequested
    | AgentPauseRequested
    | AgentResumeRequested
    | DaemonStopRequested
    | AgentSpawned
    | AgentReady
    | AgentBusy
    | AgentIdle
    | AgentUnhealthy
    | AgentCrashed
    | AgentPaused
    | AgentResumed
    | AgentTerminated
    | BreakerOpened
    | BreakerHalfOpened
    | BreakerClosed
    | BudgetExhausted
    | DaemonStarted
    | DaemonStopped
    | NodeLeaseTaken
    | NodeLeaseLost
    | BudgetLimitSet
    | TaskMerged
    | TaskDiscarded
    | TaskContinued
    | TaskPermissionDenied
    | ApprovalRequested
    | ApprovalAnswered
)
"""The tagged union of every event type (decode target of the codec)."""

EVENT_TYPES: dict[str, type[Event]] = {
    str(cls.__struct_config__.tag): cls for cls in AnyEvent.__args__
}
"""Every event class by its stable tag."""

CONTROL_EVENTS: frozenset[type[Event]] = frozenset(
    {
        TaskCancelRequested,
        TaskRetryRequested,
        AgentSpawnRequested,
        AgentKillRequested,
        AgentPauseRequested,
        AgentResumeRequested,
        DaemonStopRequested,
    }
)
"""Requests for the daemon to act on; the projection only records them as pending."""
