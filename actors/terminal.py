"""How attempts and tasks end: completion, failure, retry, dead-lettering, cancellation, and the
orchestrator's own shutdown. A part of the Orchestrator, kept in its own module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actors import reports
from actors.messages import AttemptEnded, CancelAttempt, Timer
from actors.policy import BREAKER_FAILURES, IMMEDIATE_RETRY, charged_attempts, retried
from actors.runtime import Outcome
from events import types as t
from events.state import TaskState

if TYPE_CHECKING:
    from actors.orchestrator import Orchestrator

__all__ = ["cancel", "doomed", "ended", "fail_now", "force_stop", "shutdown"]


def ended(orch: Orchestrator, msg: AttemptEnded) -> None:
    task = orch.state.tasks.get(msg.task_id)
    agent_id = msg.agent_id
    outcome = msg.outcome
    agent = orch.state.agents.get(agent_id)
    keep_agent = agent is not None and agent_id in orch.supervisors and agent.status != "terminated"
    follow: list[t.Event] = []  # the agent's own events, appended with the task's outcome
    if keep_agent:
        if outcome.failure == "unhealthy":
            follow.append(
                t.AgentUnhealthy(at=orch._now(), agent_id=agent_id, reason=outcome.reason)
            )
        follow.append(t.AgentIdle(at=orch._now(), agent_id=agent_id))
    recorded = False
    if task is not None and task.attempt == msg.attempt and not task.terminal:
        recorded = record_outcome(orch, task, msg.epoch, agent_id, outcome, follow)
    if not recorded:
        orch._append(follow)
    if keep_agent:
        if orch.stopping or outcome.failure in ("unhealthy", "lost"):
            orch._retire(agent_id, "stopped with its attempt")
        elif agent_id not in orch.idle_timers:  # one pending idle check per agent is enough
            orch.idle_timers.add(agent_id)
            orch.scheduler.after(
                orch.config.idle_timeout, orch.actor_ref, Timer(kind="idle", key=agent_id)
            )
    if orch.stopping and not running(orch):
        finish_stop(orch)


def record_outcome(
    orch: Orchestrator,
    task: TaskState,
    epoch: int,
    agent_id: str,
    outcome: Outcome,
    follow: list[t.Event],
) -> bool:
    """Record how the attempt ended (fenced by attempt and epoch), with `follow` in the same
    append; False when the result was stale and nothing was appended."""
    now = orch._now()
    expect = {"state": ("assigned", "running"), "attempt": task.attempt, "epoch": epoch}
    event: t.Event
    if outcome.ok:
        event = t.TaskCompleted(
            at=now,
            task_id=task.task_id,
            attempt=task.attempt,
            agent_id=agent_id,
            exit_code=outcome.exit_code,
            result=outcome.result,
            cost_usd=outcome.cost_usd,
        )
    elif outcome.failure == "cancelled":
        event = t.TaskCancelled(at=now, task_id=task.task_id, reason=outcome.reason or "cancelled")
    else:
        event = t.TaskFailed(
            at=now,
            task_id=task.task_id,
            attempt=task.attempt,
            agent_id=agent_id,
            failure=outcome.failure or "exit",
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            transient=retried(task, outcome.failure),
        )
    if _new_usage(task, outcome):  # what it spent, kept however it ended
        reports.record_usage(orch, task.task_id, task.attempt, outcome)
    reports.record_denials(orch, task.task_id, task.attempt, outcome.denials)
    if not orch._append_if(task.task_id, expect, event, *follow):
        orch.log.warning(
            "stale result rejected", task_id=task.task_id, attempt=task.attempt, epoch=epoch
        )
        return False
    reports.breaker_report(orch, task, outcome.failure, outcome.reason, outcome.reset_at)
    after_end(orch, task)
    return True


def _new_usage(task: TaskState, outcome: Outcome) -> bool:
    """The outcome carries usage the log does not hold yet for this attempt (an outcome
    without figures, such as `lost` from a dead supervisor, keeps the last ones recorded)."""
    if not (outcome.cost_usd or outcome.input_tokens or outcome.output_tokens):
        return False
    rec = task.current
    if rec is None or rec.attempt != task.attempt:
        return True
    seen = (rec.cost_usd, rec.input_tokens, rec.output_tokens)
    return seen != (outcome.cost_usd, outcome.input_tokens, outcome.output_tokens)


def after_end(orch: Orchestrator, task: TaskState) -> None:
    """Follow-ups once a task's attempt has ended: retries, dependants."""
    now = orch._now()
    if task.state == "completed":
        ready = orch.state.ready_dependants(task.task_id)
        orch._append([t.TaskQueued(at=now, task_id=d, reason="dependencies_met") for d in ready])
    elif task.state == "failed":
        after_failure(orch, task)
    if doomed(task):
        fail_dependants(orch, task)


def doomed(task: TaskState) -> bool:
    """The task will not complete (unless someone retries it by hand): it is cancelled,
    dead-lettered, or failed for a reason that is not retried."""
    if task.state == "failed":
        return not retried(task, task.last_failure)
    return task.state in ("dead_lettered", "cancelled")


def after_failure(orch: Orchestrator, task: TaskState) -> None:
    now = orch._now()
    failure = task.last_failure
    if failure in BREAKER_FAILURES:
        if not orch.config.breakers.get(task.definition.runtime):
            orch._append([t.TaskQueued(at=now, task_id=task.task_id, reason="requeued")])
        return  # requeued once the breaker has judged the failure (requeue_after_verdict)
    if not retried(task, failure):
        return  # a permanent failure: the task stays failed
    used = charged_attempts(task)
    if used >= task.definition.max_attempts:
        orch._append(
            [
                t.TaskDeadLettered(
                    at=now,
                    task_id=task.task_id,
                    attempts=used,
                    reason=task.last_reason or failure or "",
                )
            ]
        )
        return
    delay = 0.0 if failure in IMMEDIATE_RETRY else orch.config.retry.delay(used, orch.rng)
    orch._append(
        [
            t.TaskRetryScheduled(
                at=now,
                task_id=task.task_id,
                next_attempt=task.attempt + 1,
                delay=delay,
                not_before=now + delay,
            )
        ]
    )
    orch.scheduler.after(delay, orch.actor_ref, Timer(kind="retry", key=task.task_id))


def requeue_after_verdict(orch: Orchestrator, task_id: str) -> None:
    """The breaker has recorded the failure (and opened if it had to): requeue the task; it
    will not be assigned while its breaker is open."""
    orch._catch_up()
    for trials in orch.trials.values():  # its verdict is in the log: the trial slot is free
        trials.discard(task_id)
    task = orch.state.tasks.get(task_id)
    if task is not None and task.state == "failed" and task.last_failure in BREAKER_FAILURES:
        orch._append([t.TaskQueued(at=orch._now(), task_id=task_id, reason="requeued")])


def fail_dependants(orch: Orchestrator, task: TaskState) -> None:
    """A task that will not complete fails every task waiting on it, transitively."""
    todo = [task.task_id]
    while todo:
        dep_id = todo.pop()
        dep_state = orch.state.tasks[dep_id].state
        for waiting in list(orch.state.dependants.get(dep_id, ())):
            child = orch.state.tasks.get(waiting)
            if child is None or child.state != "pending":
                continue
            orch._append(
                [
                    t.TaskFailed(
                        at=orch._now(),
                        task_id=waiting,
                        attempt=child.attempt,
                        failure="dependency",
                        reason=f"dependency {dep_id} {dep_state}",
                    )
                ]
            )
            todo.append(waiting)


def fail_now(orch: Orchestrator, task: TaskState, failure: str, reason: str) -> None:
    orch._append(
        [
            t.TaskFailed(
                at=orch._now(),
                task_id=task.task_id,
                attempt=task.attempt,
                failure=failure,
                reason=reason,
            )
        ]
    )
    fail_dependants(orch, task)


def cancel(orch: Orchestrator, task_id: str) -> None:
    task = orch.state.tasks.get(task_id)
    if task is None or task.terminal:
        return
    if task.state in ("assigned", "running") and task.agent_id in orch.supervisors:
        grace = orch.config.health.kill_grace
        if orch.tell_agent(task.agent_id, CancelAttempt(task_id, task.attempt, grace, "cancelled")):
            return
        # its supervisor is gone: the attempt ends as lost (queued above); cancel after it
        orch._catch_up()
    orch._append([t.TaskCancelled(at=orch._now(), task_id=task_id, reason="cancelled on request")])
    fail_dependants(orch, task)


# -- shutdown ---------------------------------------------------------------------------


def running(orch: Orchestrator) -> list[TaskState]:
    return [
        task
        for task in orch.state.tasks.values()
        if task.state in ("assigned", "running") and task.agent_id in orch.supervisors
    ]


def shutdown(orch: Orchestrator, grace: float, reason: str) -> None:
    first = not orch.stopping
    orch.stopping = True
    orch.stop_reason = reason
    if not running(orch):
        finish_stop(orch)
    elif first and grace > 0:
        orch.log.info(
            "stopping: waiting for running tasks", grace=grace, running=len(running(orch))
        )
        orch.scheduler.after(grace, orch.actor_ref, Timer(kind="grace"))
    else:
        force_stop(orch)


def force_stop(orch: Orchestrator) -> None:
    if orch.stopped.is_set():
        return
    for task in running(orch):
        orch.tell_agent(
            task.agent_id or "",
            CancelAttempt(task.task_id, task.attempt, orch.config.health.kill_grace, "lost"),
        )
    if not running(orch):
        finish_stop(orch)


def finish_stop(orch: Orchestrator) -> None:
    if orch.stopped.is_set():
        return
    now = orch._now()
    events: list[t.Event] = [
        t.AgentTerminated(at=now, agent_id=agent_id, reason="daemon stopped")
        for agent_id in orch.supervisors
    ]
    events.append(
        t.DaemonStopped(
            at=now,
            node_id=orch.config.node_id,
            epoch=orch.epoch,
            reason=orch.stop_reason,
        )
    )
    orch._append(events)
    for ref in list(orch.supervisors.values()) + list(orch.breakers.values()):
        ref.stop(block=False)
    orch.supervisors.clear()
    if orch.checkpoint is not None:
        orch.checkpoint(orch.state)
        orch.snapshot_at = orch.state.event_count
    orch.log.info("orchestrator stopped", epoch=orch.epoch)
    orch.stopped.set()
