"""What supervisors and timers report to the orchestrator: an attempt started, a notice from
its runtime, a timer came due, and how a failure counts for a circuit breaker. A part of the
Orchestrator, kept in its own module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from actors.messages import (
    AttemptStarted,
    BreakerFailure,
    BreakerSuccess,
    CancelAttempt,
    NoticeReceived,
    Timer,
)
from actors.policy import BREAKER_FAILURES
from actors.runtime import PermissionDenial, ProgressNotice, SessionNotice, UsageNotice
from events import types as t
from events.state import TaskState

if TYPE_CHECKING:
    from actors.orchestrator import Orchestrator

__all__ = ["breaker_report", "notice", "record_denials", "record_usage", "started", "timer"]


def started(orch: Orchestrator, msg: AttemptStarted) -> None:
    ok = orch._append_if(
        msg.task_id,
        {"state": "assigned", "attempt": msg.attempt, "epoch": msg.epoch},
        t.TaskStarted(
            at=orch._now(),
            task_id=msg.task_id,
            attempt=msg.attempt,
            agent_id=msg.agent_id,
            pid=msg.pid,
            create_time=msg.create_time,
            log_path=msg.log_path,
            workspace=msg.workspace,
            branch=msg.branch,
        ),
    )
    if not ok:  # cancelled or taken over meanwhile: this attempt must not run on
        orch.tell_agent(msg.agent_id, CancelAttempt(msg.task_id, msg.attempt, 0.0, "cancelled"))


class _Usage(Protocol):
    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float: ...


def record_usage(orch: Orchestrator, task_id: str, attempt: int, usage: _Usage) -> None:
    """Append the attempt's cumulative usage (from a runtime notice or a final outcome)."""
    orch._append(
        [
            t.TaskUsage(
                at=orch._now(),
                task_id=task_id,
                attempt=attempt,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
            )
        ]
    )


def record_denials(
    orch: Orchestrator, task_id: str, attempt: int, denials: Sequence[PermissionDenial]
) -> None:
    """Append one `task.permission_denied` per tool call the attempt was refused."""
    if denials:
        orch._append(
            [
                t.TaskPermissionDenied(
                    at=orch._now(),
                    task_id=task_id,
                    attempt=attempt,
                    tool=d.tool,
                    tool_use_id=d.tool_use_id,
                    summary=d.summary,
                )
                for d in denials
            ]
        )


def notice(orch: Orchestrator, msg: NoticeReceived) -> None:
    task = orch.state.tasks.get(msg.task_id)
    if task is None or task.attempt != msg.attempt or task.terminal:
        return
    now = orch._now()
    notice = msg.notice
    match notice:
        case SessionNotice(session_id=session_id):
            orch._append(
                [
                    t.TaskCheckpointed(
                        at=now,
                        task_id=msg.task_id,
                        attempt=msg.attempt,
                        session_id=session_id,
                        note="session started",
                    )
                ]
            )
        case ProgressNotice(summary=summary):
            orch._append(
                [t.TaskProgress(at=now, task_id=msg.task_id, attempt=msg.attempt, summary=summary)]
            )
        case UsageNotice():
            record_usage(orch, msg.task_id, msg.attempt, notice)
        case _:
            pass


def timer(orch: Orchestrator, kind: str, key: str) -> None:
    if kind == "retry":
        task = orch.state.tasks.get(key)
        if task is not None and task.state == "retry_wait":
            orch._append([t.TaskQueued(at=orch._now(), task_id=key, reason="retry_due")])
    elif kind == "idle":
        orch.idle_timers.discard(key)
        agent = orch.state.agents.get(key)
        if agent is None or agent.status != "idle" or key not in orch.supervisors:
            return  # busy again (a new timer starts when it is next idle) or gone
        left = agent.updated_at + orch.config.idle_timeout - orch._now()
        if left <= 1e-3:
            orch._retire(key, "idle")
        else:  # it worked since this timer was set: check again when it may be due
            orch.idle_timers.add(key)
            orch.scheduler.after(left, orch.actor_ref, Timer(kind="idle", key=key))


def breaker_report(
    orch: Orchestrator, task: TaskState, failure: str | None, reason: str, reset_at: float | None
) -> None:
    name = orch.config.breakers.get(task.definition.runtime)
    if not name:
        return
    if failure in BREAKER_FAILURES:
        # a failed trial keeps its slot until the breaker's verdict (requeue_after_verdict):
        # freed now, a second task could start before the breaker has reopened
        orch._breaker(name).tell(
            BreakerFailure(reason=reason, reset_at=reset_at, task_id=task.task_id)
        )
    else:
        orch.trials.get(name, set()).discard(task.task_id)
        orch._breaker(name).tell(BreakerSuccess())
