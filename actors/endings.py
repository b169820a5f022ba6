"""How attempts and tasks end: an attempt's outcome recorded (fenced by attempt and epoch), then
what follows from it — a retry with backoff, dead-lettering, requeueing after a circuit
breaker's verdict, dependants queued or failed — and cancellation and immediate failures."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import NamedTuple

from actors import attempt_reports
from actors.agents import Agents
from actors.breaker_gate import BreakerGate
from actors.ledger import Conditional, Ledger, Unconditional
from actors.messages import AttemptEnded, CancelAttempt, Timer
from actors.nodes import foreign_owner
from actors.policy import (
    BREAKER_FAILURES,
    IMMEDIATE_RETRY,
    OrchestratorConfig,
    charged_attempts,
    retried,
)
from actors.runtime import Outcome
from events import types as t
from events.state import TaskState

__all__ = ["EndedBatch", "Endings", "doomed"]


def doomed(task: TaskState) -> bool:
    """The task will not complete (unless someone retries it by hand): it is cancelled,
    dead-lettered, or failed for a reason that is not retried."""
    if task.state == "failed":
        return not retried(task, task.last_failure)
    return task.state in ("dead_lettered", "cancelled")


class EndedBatch(NamedTuple):
    """The records of several attempts' ends, and for each end (message, its task if its
    outcome is recorded, the agent's events, the index of its outcome record)."""

    records: list[Conditional | Unconditional]
    endings: list[tuple[AttemptEnded, TaskState | None, list[t.Event], int]]


class Endings:
    def __init__(
        self,
        ledger: Ledger,
        agents: Agents,
        gate: BreakerGate,
        config: OrchestratorConfig,
        rng: random.Random,
    ) -> None:
        self.ledger = ledger
        self.state = ledger.state
        self.agents = agents
        self.gate = gate
        self.config = config
        self.rng = rng

    def prepare(self, msgs: Sequence[AttemptEnded]) -> EndedBatch:
        """Agents' attempts ended (each task at most once in `msgs`): the records of their
        outcomes (unless a result is stale: then only the agent's own events) to append in
        one go, with others, before `settle` acts on them."""
        batch = EndedBatch([], [])
        for msg in msgs:
            task = self.state.tasks.get(msg.task_id)
            follow = self._agent_follow(msg)  # the agent's own events, with the task's outcome
            if task is not None and task.attempt == msg.attempt and not task.terminal:
                batch.records.extend(
                    self._outcome_records(task, msg.epoch, msg.agent_id, msg.outcome, follow)
                )
            else:
                task = None
                batch.records.append(Unconditional(follow))  # (nothing if the agent is gone)
            batch.endings.append((msg, task, follow, len(batch.records) - 1))
        return batch

    def settle(self, batch: EndedBatch, appended: Sequence[bool]) -> None:
        """Act on the outcomes of `batch` (`appended`: which of its records were): a retry,
        dependants, the breaker told; then keep each agent idle or retire it."""
        for msg, task, follow, at in batch.endings:
            if task is not None:
                if appended[at]:
                    outcome = msg.outcome
                    self.gate.report(task, outcome.failure, outcome.reason, outcome.reset_at)
                    self._after_end(task)
                else:
                    self.ledger.log.warning(
                        "stale result rejected",
                        task_id=task.task_id,
                        attempt=task.attempt,
                        epoch=msg.epoch,
                    )
                    self.ledger.append(follow)
            if follow:  # the agent is kept
                self.agents.release(msg.agent_id, msg.outcome.failure)

    def _agent_follow(self, msg: AttemptEnded) -> list[t.Event]:
        """The events of the agent whose attempt ended, if it is kept (else none)."""
        agent = self.state.agents.get(msg.agent_id)
        if agent is None or not self.agents.has(msg.agent_id) or agent.status == "terminated":
            return []
        now = self.ledger.now()
        follow: list[t.Event] = []
        if msg.outcome.failure == "unhealthy":
            reason = msg.outcome.reason
            follow.append(t.AgentUnhealthy(at=now, agent_id=msg.agent_id, reason=reason))
        follow.append(t.AgentIdle(at=now, agent_id=msg.agent_id))
        return follow

    def _outcome_records(
        self, task: TaskState, epoch: int, agent_id: str, outcome: Outcome, follow: list[t.Event]
    ) -> list[Conditional | Unconditional]:
        """How the attempt ended, fenced by attempt and epoch, with `follow` in the same
        append, after what it spent and was refused (kept however it ended)."""
        now = self.ledger.now()
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
            event = t.TaskCancelled(
                at=now, task_id=task.task_id, reason=outcome.reason or "cancelled"
            )
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
        before: list[t.Event] = []
        if _new_usage(task, outcome):
            before.append(attempt_reports.usage_event(task.task_id, task.attempt, outcome, now))
        before += attempt_reports.denial_events(task.task_id, task.attempt, outcome.denials, now)
        outcome_record = Conditional(task.task_id, expect, event, follow)
        return [Unconditional(before), outcome_record] if before else [outcome_record]

    def _after_end(self, task: TaskState) -> None:
        """Follow-ups once a task's attempt has ended: retries, dependants."""
        if task.state == "completed":
            ready = self.state.ready_dependants(task.task_id)
            now = self.ledger.now()
            self.ledger.append(
                [t.TaskQueued(at=now, task_id=d, reason="dependencies_met") for d in ready]
            )
        elif task.state == "failed":
            self.after_failure(task)
        if doomed(task):
            self.fail_dependants(task)

    def after_failure(self, task: TaskState) -> None:
        """Decide what follows a failure: a requeue (dependency failures, once the breaker has
        judged them), a retry after a backoff, dead-lettering, or nothing (a permanent one)."""
        now = self.ledger.now()
        failure = task.last_failure
        if failure in BREAKER_FAILURES:
            if not self.gate.guards(task):
                self.ledger.append([t.TaskQueued(at=now, task_id=task.task_id, reason="requeued")])
            return  # requeued once the breaker has judged the failure (requeue_after_verdict)
        if not retried(task, failure):
            return  # a permanent failure: the task stays failed
        used = charged_attempts(task)
        if used >= task.definition.max_attempts:
            self.ledger.append(
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
        delay = 0.0 if failure in IMMEDIATE_RETRY else self.config.retry.delay(used, self.rng)
        self.ledger.append(
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
        self.agents.later(delay, Timer(kind="retry", key=task.task_id))

    def retry_due(self, task_id: str) -> None:
        """A retry's backoff is over: queue the task (unless it has moved on)."""
        task = self.state.tasks.get(task_id)
        if task is not None and task.state == "retry_wait":
            self.ledger.append(
                [t.TaskQueued(at=self.ledger.now(), task_id=task_id, reason="retry_due")]
            )

    def requeue_after_verdict(self, task_id: str) -> None:
        """The breaker has recorded the failure (and opened if it had to): requeue the task; it
        will not be assigned while its breaker is open."""
        self.ledger.catch_up()
        self.gate.verdict(task_id)  # its verdict is in the log: the trial slot is free
        task = self.state.tasks.get(task_id)
        if task is not None and task.state == "failed" and task.last_failure in BREAKER_FAILURES:
            self.ledger.append(
                [t.TaskQueued(at=self.ledger.now(), task_id=task_id, reason="requeued")]
            )

    def fail_dependants(self, task: TaskState) -> None:
        """A task that will not complete fails every task waiting on it, transitively."""
        todo = [task.task_id]
        while todo:
            dep_id = todo.pop()
            dep_state = self.state.task_state(dep_id)
            for waiting in list(self.state.dependants.get(dep_id, ())):
                child = self.state.tasks.get(waiting)
                if child is None or child.state != "pending":
                    continue
                self.ledger.append(
                    [
                        t.TaskFailed(
                            at=self.ledger.now(),
                            task_id=waiting,
                            attempt=child.attempt,
                            failure="dependency",
                            reason=f"dependency {dep_id} {dep_state}",
                        )
                    ]
                )
                todo.append(waiting)

    def fail_now(self, task: TaskState, failure: str, reason: str) -> None:
        """Fail a task that cannot run (and its dependants) without an attempt."""
        self.ledger.append(
            [
                t.TaskFailed(
                    at=self.ledger.now(),
                    task_id=task.task_id,
                    attempt=task.attempt,
                    failure=failure,
                    reason=reason,
                )
            ]
        )
        self.fail_dependants(task)

    def cancel(self, task_id: str) -> None:
        """Cancel a task on request: a running attempt is stopped (and ends as cancelled),
        anything else is cancelled at once."""
        task = self.state.tasks.get(task_id)
        if task is None or task.terminal:
            return
        if foreign_owner(self.state, task, self.config.node_id) is not None:
            return  # another node runs it: that node stops it
        if task.state in ("assigned", "running") and self.agents.has(task.agent_id or ""):
            grace = self.config.health.kill_grace
            message = CancelAttempt(task_id, task.attempt, grace, "cancelled")
            if self.agents.tell(task.agent_id or "", message):
                return
            # its supervisor is gone: the attempt ends as lost (queued above); cancel after it
            self.ledger.catch_up()
        self.ledger.append(
            [t.TaskCancelled(at=self.ledger.now(), task_id=task_id, reason="cancelled on request")]
        )
        self.fail_dependants(task)


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
