"""Events of the user's review of an agent's work: the tool calls Claude Code refused, the
approvals a person gives or refuses, and landing the work (`forge task merge|discard|continue`).
Part of the catalogue `events.types`, which re-exports them."""

from __future__ import annotations

from typing import Any

from events.event_base import Event, Timestamp

__all__ = [
    "ApprovalAnswered",
    "ApprovalRequested",
    "TaskContinued",
    "TaskDiscarded",
    "TaskMerged",
    "TaskPermissionDenied",
]


# -- landing an agent's work (appended by `forge task merge|discard|continue`) ---------------


class TaskMerged(Event, tag="task.merged", frozen=True, kw_only=True):
    """The task's branch was merged into `into`; `commit` is the target's new head (a merge
    commit, a squashed commit, or the branch's own head after a fast-forward)."""

    task_id: str
    branch: str
    into: str
    commit: str
    base: str = ""  # the commit the task's worktree started from
    head: str = ""  # the task branch's head that was merged
    squash: bool = False


class TaskDiscarded(Event, tag="task.discarded", frozen=True, kw_only=True):
    """The task's worktree and branch were removed; `head` is the commit the branch pointed
    to (empty if there was no branch), so the discarded work can still be found by id."""

    task_id: str
    branch: str
    head: str = ""
    worktree: str | None = None


class TaskContinued(Event, tag="task.continued", frozen=True, kw_only=True):
    """An ended task is queued again for a follow-up: its next attempt resumes the same
    Claude session (`--resume`) in the same worktree and branch, with `prompt` as the message."""

    task_id: str
    prompt: str
    session_id: str | None = None
    after_attempt: int = 0  # the attempt the follow-up continues
    restore: dict[str, Any] | None = None  # as TaskQueued.restore


# -- permission denials --------------------------------------------------------------------


class TaskPermissionDenied(Event, tag="task.permission_denied", frozen=True, kw_only=True):
    """Claude Code refused one tool call of an attempt (its result line's `permission_denials`).

    `summary` is the redacted, shortened command, path or URL of the call (never a file's
    content)."""

    task_id: str
    attempt: int
    tool: str
    tool_use_id: str = ""
    summary: str = ""


# -- approvals (appended by an agent's approval server and by `forge approve|deny`) --------


class ApprovalRequested(Event, tag="approval.requested", frozen=True, kw_only=True):
    """A tool call the task's policy neither allows nor denies waits for a person's answer.

    `summary` is the redacted command, path or URL (never a whole file); `match` is the digest an
    `--always` rule made from it would match (`events.approvals.match_key`). Unanswered, it is
    denied at `expires_at` (= `at` + `timeout`), so no reader needs a clock to judge it."""

    approval_id: str
    task_id: str
    attempt: int
    tool: str
    summary: str = ""
    match: str = ""
    timeout: float = 0.0
    expires_at: Timestamp = 0.0


class ApprovalAnswered(Event, tag="approval.answered", frozen=True, kw_only=True):
    """The answer to an approval request; the first answer in the log wins.

    `always` (with `allowed`) also allows the same tool and input for the rest of the task;
    `by` says who answered: `cli` (a person), `timeout` or `unavailable` (the log could not be
    reached)."""

    approval_id: str
    task_id: str
    allowed: bool
    always: bool = False
    by: str = "cli"
    reason: str = ""
