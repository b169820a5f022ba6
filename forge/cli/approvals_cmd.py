"""`forge approvals`, `forge approve ID [--always]`, `forge deny ID [--reason TEXT]`.

An agent's tool call that its permission policy neither allows nor denies waits in the log
(`approval.requested`) until one of these commands appends the answer (`approval.answered`),
or until its timeout denies it. The agent's approval server reads the answer from the log, so
answering needs no daemon: a request made before a daemon restart is answered the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import click

from events import types as t
from events.approvals import ApprovalState
from events.errors import ForgeError
from events.redact import redact
from events.state import FleetState, TaskState, to_builtins
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.render import duration, fleet_state, state_style, table
from forge.errors import NotFound

__all__ = [
    "answer",
    "approval_note",
    "approvals",
    "approve",
    "deny",
    "render_approvals",
    "waiting_approvals",
]

MAX_REASON = 1000


def waiting_approvals(state: FleetState, task_id: str | None = None) -> list[ApprovalState]:
    """The requests that wait for an answer, oldest first (only `task_id`'s if given)."""
    found = [
        a
        for a in state.approvals.values()
        if a.status == "pending" and (task_id is None or a.task_id == task_id)
    ]
    return sorted(found, key=lambda a: a.requested_at)


def _rows(found: Sequence[ApprovalState], now: float) -> list[list[str]]:
    rows = []
    for a in found:
        if a.status == "pending":
            left = a.expires_at - now
            status = f"expires in {duration(left)}" if left > 0 else "expired"
        else:
            status = state_style(a.status) + (f" ({a.by})" if a.by else "")
        rows.append(
            [a.approval_id, a.task_id, a.tool, a.summary, duration(now - a.requested_at), status]
        )
    return rows


def render_approvals(found: Sequence[ApprovalState], now: float) -> str:
    headers = ["ID", "TASK", "TOOL", "SUMMARY", "AGE", "STATUS"]
    return table(headers, _rows(found, now))


@click.command("approvals")
@click.option("--task", "task_id", help="Only this task's requests.")
@click.option("--all", "show_all", is_flag=True, help="Include answered requests.")
@json_option
@pass_app
def approvals(app: App, task_id: str | None, show_all: bool, as_json: bool) -> None:
    """List the tool calls that wait for `forge approve` or `forge deny`."""
    state = fleet_state(app)
    if task_id is not None and task_id not in state.tasks:
        raise NotFound(f"unknown task id {task_id!r}")
    if show_all:
        found = sorted(
            (a for a in state.approvals.values() if task_id is None or a.task_id == task_id),
            key=lambda a: a.requested_at,
        )
    else:
        found = waiting_approvals(state, task_id)
    if as_json:
        echo_data([to_builtins(a) for a in found], True, str)
    elif not found:
        click.echo("no approvals" if show_all else "no approvals waiting")
    else:
        click.echo(render_approvals(found, time.time()))


def _waiting(state: FleetState, approval_id: str) -> ApprovalState:
    found = state.approvals.get(approval_id)
    if found is None:
        raise NotFound(f"unknown approval id {approval_id!r} (see `forge approvals`)")
    if found.status != "pending":
        by = f" by {found.by}" if found.by else ""
        raise ForgeError(f"approval {approval_id} is already {found.status}{by}")
    return found


def _answer(app: App, approval_id: str, allowed: bool, always: bool, reason: str) -> None:
    click.echo(answer(app, approval_id, allowed=allowed, always=always, reason=reason))


def answer(app: App, approval_id: str, *, allowed: bool, always: bool, reason: str) -> str:
    """Append the answer to a waiting tool call (`forge approve|deny`, `forge top`); says what
    was done. The first answer in the log wins: a later one is an error."""
    waiting = _waiting(fleet_state(app), approval_id)
    app.store.append(
        t.ApprovalAnswered(
            at=time.time(),
            approval_id=approval_id,
            task_id=waiting.task_id,
            allowed=allowed,
            always=always,
            by="cli",
            reason=reason,
        )
    )
    # The first answer in the log wins: the agent's timeout may have come just before ours.
    recorded = fleet_state(app).approvals[approval_id]
    if recorded.by != "cli" or recorded.status != ("allowed" if allowed else "denied"):
        raise ForgeError(f"approval {approval_id} was {recorded.status} by {recorded.by} first")
    verb = "allowed" if allowed else "denied"
    scope = f"; {waiting.tool} calls like it are allowed for the rest of the task" if always else ""
    return f"{verb} {approval_id} ({waiting.tool}: {waiting.summary}){scope}"


@click.command("approve")
@click.argument("approval_id")
@click.option(
    "--always",
    is_flag=True,
    help="Also allow the same tool with the same command, path or URL for the rest of the task.",
)
@pass_app
def approve(app: App, approval_id: str, always: bool) -> None:
    """Allow a waiting tool call (see `forge approvals`)."""
    _answer(app, approval_id, True, always, "")


@click.command("deny")
@click.argument("approval_id")
@click.option("--reason", default="", help="Why: the agent reads it.")
@pass_app
def deny(app: App, approval_id: str, reason: str) -> None:
    """Refuse a waiting tool call; the agent is told why."""
    if len(reason) > MAX_REASON or "\0" in reason:
        raise click.BadParameter(
            f"at most {MAX_REASON} characters, with no NUL byte", param_hint="--reason"
        )
    _answer(app, approval_id, False, False, redact(reason))


def approval_note(state: FleetState, task: TaskState) -> str:
    """`forge task show`'s lines about the task's tool calls waiting for an answer."""
    waiting = waiting_approvals(state, task.task_id)
    if not waiting:
        return ""
    head = "\n\nwaiting for approval (`forge approve ID` / `forge deny ID`):\n"
    return head + render_approvals(waiting, time.time())
