"""`apply` handlers for tasks: their lifecycle from submission to the end, landing an agent's
work, and the cancel and retry requests about them (see `events.projection`, which dispatches
to them). Apart from the dispatch so that each module holds one family of events, as
`events.projection_fleet` does for everything but tasks.
"""

from __future__ import annotations

from typing import Any

from events import types as t
from events.projection_approvals import abandon_approvals
from events.projection_eviction import evict, left_pending, restore
from events.projection_fleet import anomaly
from events.state import EVICTED_STATES, AttemptRecord, Denial, FleetState, TaskState
from events.transitions import TERMINAL_STATES, TRANSITIONS, legal_sources


def _task(state: FleetState, event: Any) -> TaskState | None:
    """The event's task if its transition is legal from the task's state, else None (a legal
    event about a finished task changes nothing in the hot state: it is in the log)."""
    task = state.tasks.get(event.task_id)
    rule = TRANSITIONS[type(event)]
    sources = legal_sources(event)
    if task is None and (done := state.finished.get(event.task_id)) is not None:
        if done.partition("|")[0] not in sources or rule.target is not None:
            anomaly(state, event)  # (a reopening whose restored state was unusable, too)
        return None
    if task is None or task.state not in sources:
        anomaly(state, event)
        return None
    if rule.match_attempt and event.attempt != task.attempt:
        anomaly(state, event)
        return None
    return task


def _enqueue(state: FleetState, task: TaskState) -> None:
    if task.state == "pending":
        left_pending(state, task)
    task.state = "queued"
    state.queue_seq += 1
    task.queued_seq = state.queue_seq
    state.queues[task.definition.priority][task.task_id] = None


def _dequeue(state: FleetState, task: TaskState) -> None:
    state.queues[task.definition.priority].pop(task.task_id, None)


def _finish(state: FleetState, task: TaskState, new_state: str, at: float) -> None:
    _dequeue(state, task)
    if task.state == "pending":
        left_pending(state, task)
    task.state = new_state
    task.finished_at = at
    state.cancel_requests.pop(task.task_id, None)
    if task.pending_approvals:
        abandon_approvals(state, task, at)
    if new_state in EVICTED_STATES:
        evict(state, task)


def _record(task: TaskState) -> AttemptRecord | None:
    rec = task.history[-1] if task.history else None
    return rec if rec is not None and rec.attempt == task.attempt else None


def _add_cost(state: FleetState, task: TaskState, rec: AttemptRecord, cost: float) -> None:
    delta = cost - rec.cost_usd
    if delta > 0:
        rec.cost_usd = cost
        task.cost_usd += delta
        state.total_cost_usd += delta


# -- tasks ---------------------------------------------------------------------------------


def _submitted(state: FleetState, e: t.TaskSubmitted) -> None:
    spec = e.spec
    key = spec.idempotency_key
    if (
        e.task_id in state.tasks
        or e.task_id in state.finished
        or (key is not None and key in state.idempotency)
    ):
        anomaly(state, e)
        return
    task = TaskState(task_id=e.task_id, state="pending", definition=spec, submitted_at=e.at)
    state.tasks[e.task_id] = task
    if key is not None:
        state.idempotency[key] = e.task_id
    if state.unmet_dependencies(e.task_id):
        for dep in spec.after:
            state.dependants.setdefault(dep, []).append(e.task_id)
    else:
        _enqueue(state, task)


def _queued(state: FleetState, e: t.TaskQueued) -> None:
    restore(state, e.task_id, e.restore)
    task = _task(state, e)
    if task is None:
        return
    task.not_before = None
    task.finished_at = None
    state.retry_requests.pop(e.task_id, None)
    _enqueue(state, task)


def _assigned(state: FleetState, e: t.TaskAssigned) -> None:
    task = _task(state, e)
    if task is None:
        return
    _dequeue(state, task)
    task.state = "assigned"
    task.attempt = e.attempt
    task.agent_id = e.agent_id
    task.epoch = e.epoch
    task.node_id = e.node_id
    task.pid = task.create_time = task.log_path = None
    task.history = (
        *task.history,
        AttemptRecord(
            attempt=e.attempt,
            agent_id=e.agent_id,
            epoch=e.epoch,
            node_id=e.node_id,
            assigned_at=e.at,
            session_id=task.session_id,
        ),
    )


def _started(state: FleetState, e: t.TaskStarted) -> None:
    task = _task(state, e)
    if task is None:
        return
    task.state = "running"
    task.pid = e.pid
    task.create_time = e.create_time
    task.log_path = e.log_path
    if e.workspace is not None:
        task.workspace, task.branch = e.workspace, e.branch
    if e.session_id is not None:
        task.session_id = e.session_id
    rec = _record(task)
    if rec is not None:
        rec.outcome = "running"
        rec.started_at = e.at
        rec.pid = e.pid
        rec.session_id = task.session_id


def _progress(state: FleetState, e: t.TaskProgress) -> None:
    task = _task(state, e)
    if task is not None:
        task.progress = e.summary


def _permission_denied(state: FleetState, e: t.TaskPermissionDenied) -> None:
    task = _task(state, e)
    if task is not None:
        denial = Denial(attempt=e.attempt, tool=e.tool, summary=e.summary, at=e.at)
        task.denials = (*task.denials, denial)


def _usage(state: FleetState, e: t.TaskUsage) -> None:
    task = _task(state, e)
    if task is None:
        return
    rec = _record(task)
    if rec is None:
        return
    task.input_tokens += e.input_tokens - rec.input_tokens
    task.output_tokens += e.output_tokens - rec.output_tokens
    rec.input_tokens = e.input_tokens
    rec.output_tokens = e.output_tokens
    # cumulative for the attempt: the latest figure replaces the last one, down as well as up
    # (a live estimate is replaced by the CLI's own total at the end)
    delta = e.cost_usd - rec.cost_usd
    rec.cost_usd = e.cost_usd
    task.cost_usd += delta
    state.total_cost_usd += delta


def _checkpointed(state: FleetState, e: t.TaskCheckpointed) -> None:
    task = _task(state, e)
    if task is not None:
        task.session_id = e.session_id
        rec = _record(task)
        if rec is not None:
            rec.session_id = e.session_id


def _completed(state: FleetState, e: t.TaskCompleted) -> None:
    task = _task(state, e)
    if task is None:
        return
    _finish(state, task, "completed", e.at)
    task.result = e.result
    task.exit_code = e.exit_code
    rec = _record(task)
    if rec is not None:
        rec.outcome = "completed"
        rec.finished_at = e.at
        rec.exit_code = e.exit_code
        _add_cost(state, task, rec, e.cost_usd)


def _failed(state: FleetState, e: t.TaskFailed) -> None:
    task = _task(state, e)
    if task is None:
        return
    ran = task.state in ("assigned", "running")  # else failed before an attempt (budget, deps)
    _finish(state, task, "failed", e.at)
    task.last_failure = e.failure
    task.last_reason = e.reason
    task.exit_code = e.exit_code
    rec = _record(task) if ran else None
    if rec is not None:
        rec.outcome = "failed"
        rec.finished_at = e.at
        rec.failure = e.failure
        rec.reason = e.reason
        rec.exit_code = e.exit_code


def _retry_scheduled(state: FleetState, e: t.TaskRetryScheduled) -> None:
    task = _task(state, e)
    if task is not None:
        task.state = "retry_wait"
        task.not_before = e.not_before
        task.finished_at = None


def _dead_lettered(state: FleetState, e: t.TaskDeadLettered) -> None:
    task = _task(state, e)
    if task is not None:
        _finish(state, task, "dead_lettered", e.at)
        task.last_reason = e.reason or task.last_reason


def _cancelled(state: FleetState, e: t.TaskCancelled) -> None:
    task = _task(state, e)
    if task is not None:
        rec = _record(task)
        if rec is not None and rec.outcome in ("assigned", "running"):  # the attempt it stopped
            rec.outcome = "cancelled"
            rec.finished_at = e.at
            rec.reason = e.reason
        _finish(state, task, "cancelled", e.at)
        task.last_reason = e.reason


# -- landing an agent's work -----------------------------------------------------------------


def _continued(state: FleetState, e: t.TaskContinued) -> None:
    restore(state, e.task_id, e.restore)
    task = _task(state, e)
    if task is None:
        return
    task.follow_up = e.prompt
    if e.session_id is not None:
        task.session_id = e.session_id
    task.not_before = None
    task.finished_at = None
    task.merged_into = task.merge_commit = None
    state.retry_requests.pop(e.task_id, None)
    _enqueue(state, task)


def _merged(state: FleetState, e: t.TaskMerged) -> None:
    task = state.tasks.get(e.task_id)
    if task is None:
        if e.task_id not in state.finished:
            anomaly(state, e)
        return
    task.merged_into, task.merge_commit = e.into, e.commit


def _discarded(state: FleetState, e: t.TaskDiscarded) -> None:
    task = state.tasks.get(e.task_id)
    if task is None:
        if e.task_id not in state.finished:
            anomaly(state, e)
        return
    task.discarded = True


# -- cancel and retry requests -------------------------------------------------------------


def _cancel_requested(state: FleetState, e: t.TaskCancelRequested) -> None:
    task = state.tasks.get(e.task_id)
    if task is not None and task.state not in TERMINAL_STATES:
        state.cancel_requests[e.task_id] = e.at


def _retry_requested(state: FleetState, e: t.TaskRetryRequested) -> None:
    if e.task_id in state.tasks or e.task_id in state.finished:
        state.retry_requests[e.task_id] = e.at
