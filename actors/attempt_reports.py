"""What a running attempt reports, recorded in the log: its start (fenced by attempt and epoch),
its runtime's notices (session, progress, usage) and the tool calls it was refused."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from actors.agents import Agents
from actors.ledger import Conditional, Ledger
from actors.messages import AttemptStarted, CancelAttempt, NoticeReceived
from actors.runtime import PermissionDenial, ProgressNotice, SessionNotice, UsageNotice
from events import types as t

__all__ = ["notice", "record_denials", "record_usage", "started"]


def started(ledger: Ledger, agents: Agents, msg: AttemptStarted) -> None:
    """Record the attempt's start; one that no longer owns its task is stopped."""
    expect = {"state": "assigned", "attempt": msg.attempt, "epoch": msg.epoch}
    event = t.TaskStarted(
        at=ledger.now(),
        task_id=msg.task_id,
        attempt=msg.attempt,
        agent_id=msg.agent_id,
        pid=msg.pid,
        create_time=msg.create_time,
        log_path=msg.log_path,
        workspace=msg.workspace,
        branch=msg.branch,
    )
    [ok] = ledger.append_if(Conditional(msg.task_id, expect, event))
    if not ok:  # cancelled or taken over meanwhile: this attempt must not run on
        agents.tell(msg.agent_id, CancelAttempt(msg.task_id, msg.attempt, 0.0, "cancelled"))


class _Usage(Protocol):
    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float: ...


def record_usage(ledger: Ledger, task_id: str, attempt: int, usage: _Usage) -> None:
    """Append the attempt's cumulative usage (from a runtime notice or a final outcome)."""
    ledger.append(
        [
            t.TaskUsage(
                at=ledger.now(),
                task_id=task_id,
                attempt=attempt,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=usage.cost_usd,
            )
        ]
    )


def record_denials(
    ledger: Ledger, task_id: str, attempt: int, denials: Sequence[PermissionDenial]
) -> None:
    """Append one `task.permission_denied` per tool call the attempt was refused."""
    if denials:
        ledger.append(
            [
                t.TaskPermissionDenied(
                    at=ledger.now(),
                    task_id=task_id,
                    attempt=attempt,
                    tool=d.tool,
                    tool_use_id=d.tool_use_id,
                    summary=d.summary,
                )
                for d in denials
            ]
        )


def notice(ledger: Ledger, msg: NoticeReceived) -> None:
    """Record what the attempt's runtime noticed (for the current attempt of a live task)."""
    task = ledger.state.tasks.get(msg.task_id)
    if task is None or task.attempt != msg.attempt or task.terminal:
        return
    now = ledger.now()
    notice = msg.notice
    match notice:
        case SessionNotice(session_id=session_id):
            ledger.append(
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
            ledger.append(
                [t.TaskProgress(at=now, task_id=msg.task_id, attempt=msg.attempt, summary=summary)]
            )
        case UsageNotice():
            record_usage(ledger, msg.task_id, msg.attempt, notice)
        case _:
            pass
