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

__all__ = [
    "denial_events",
    "notice",
    "refused_starts",
    "start_records",
    "usage_event",
]


def start_records(ledger: Ledger, msgs: Sequence[AttemptStarted]) -> list[Conditional]:
    """The records of the attempts' starts, each fenced by its attempt and daemon epoch."""
    return [
        Conditional(
            msg.task_id,
            {"state": "assigned", "attempt": msg.attempt, "epoch": msg.epoch},
            t.TaskStarted(
                at=ledger.now() if msg.at is None else msg.at,
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
        for msg in msgs
    ]


def refused_starts(
    agents: Agents, msgs: Sequence[AttemptStarted], appended: Sequence[bool]
) -> None:
    """Stop the attempts whose start was refused: cancelled or taken over meanwhile, they
    must not run on."""
    for msg, ok in zip(msgs, appended, strict=True):
        if not ok:
            agents.tell(msg.agent_id, CancelAttempt(msg.task_id, msg.attempt, 0.0, "cancelled"))


class _Usage(Protocol):
    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float: ...


def usage_event(task_id: str, attempt: int, usage: _Usage, now: float) -> t.TaskUsage:
    """The attempt's cumulative usage (from a runtime notice or a final outcome)."""
    return t.TaskUsage(
        at=now,
        task_id=task_id,
        attempt=attempt,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost_usd,
    )


def denial_events(
    task_id: str, attempt: int, denials: Sequence[PermissionDenial], now: float
) -> list[t.TaskPermissionDenied]:
    """One `task.permission_denied` per tool call the attempt was refused."""
    return [
        t.TaskPermissionDenied(
            at=now,
            task_id=task_id,
            attempt=attempt,
            tool=d.tool,
            tool_use_id=d.tool_use_id,
            summary=d.summary,
        )
        for d in denials
    ]


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
            ledger.append([usage_event(msg.task_id, msg.attempt, notice, now)])
        case _:
            pass
