"""`forge task submit|list|show|logs|cancel|retry|history`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from events import types as t
from events.redact import redact
from events.state import EVICTED_STATES, TaskState, to_builtins
from events.transitions import TASK_STATES
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.approvals_cmd import approval_note
from forge.cli.eventview import details, tag_of, task_history
from forge.cli.isolation_opts import isolation_fields, isolation_options
from forge.cli.isolation_view import isolation_lines
from forge.cli.permission_opts import permission_fields, permission_options
from forge.cli.permissions_view import denied_note, permission_lines
from forge.cli.render import (
    all_tasks,
    daemon_info,
    describe,
    duration,
    ending_note,
    fleet_state,
    stamp,
    state_style,
    table,
    task_duration,
    task_or_fail,
)
from forge.cli.task_logs import follow_attempt, follow_task, log_path, print_attempt
from forge.errors import ForgeError, InvalidTask, NotFound
from forge.submit import plan, submit
from forge.task_request import TaskRequest, read_tasks_file

__all__ = ["request_cancel", "request_retry", "task"]


@click.group()
def task() -> None:
    """Submit, list, inspect, cancel and retry tasks."""


def _env_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--env")
        out[name] = value
    return out


def _read_prompt(prompt: str | None) -> str | None:
    if prompt != "-":
        return prompt
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidTask(f"the prompt on stdin is not UTF-8 (byte {e.start})") from None


@task.command("submit")
@click.argument("prompt", required=False)
@click.option(
    "--command",
    "-c",
    "command",
    multiple=True,
    help="The command to run. Once: a string run by /bin/sh -c (pipes, && and $VAR work). "
    "Repeated: one argument each, exec'd verbatim with no shell.",
)
@click.option("--priority", "-p", type=click.IntRange(1, 5), help="1 (highest) to 5; default 3.")
@click.option(
    "--runtime",
    help="shell, claude, container or noop (default: shell with --command, else claude).",
)
@click.option("--repo", help="Directory the task works in (its working directory).")
@click.option("--after", multiple=True, help="Run only after this task id completed (repeatable).")
@click.option("--tag", multiple=True, help="Run only on agents carrying this tag (repeatable).")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    help="Attempts, the first included. Crashes, timeouts and lost attempts are retried; "
    "a failing exit code is not, unless --retry-on-exit.",
)
@click.option(
    "--retry-on-exit",
    is_flag=True,
    default=None,
    help="Retry the task when its command exits non-zero (tasks file: retry_on_exit = true).",
)
@click.option("--timeout", type=click.FloatRange(0, min_open=True), help="Seconds per attempt.")
@click.option(
    "--budget-usd",
    type=click.FloatRange(0),
    help="Spend limit of the task across all its attempts (claude): each attempt may spend "
    "what is left; when nothing is, the task fails max_budget.",
)
@click.option("--model", help="Model for the claude runtime.")
@click.option(
    "--image", help="Image of the container runtime (default: the settings' [container] image)."
)
@click.option("--name", help="A name shown instead of the command.")
@click.option("--env", multiple=True, metavar="NAME=VALUE", help="Extra environment (repeatable).")
@click.option("--idempotency-key", help="Submitting the same key again returns the same task.")
@click.option(
    "--file",
    "-f",
    "tasks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Submit every [[task]] of a TOML tasks file (see docs/cli.md).",
)
@permission_options
@isolation_options
@json_option
@pass_app
def submit_cmd(
    app: App, /, prompt: str | None, tasks_file: Path | None, as_json: bool, **flags: Any
) -> None:
    """Queue a task (PROMPT for claude, or --command) and print its id at once.

    PROMPT `-` reads the prompt from stdin. No daemon needs to run: the log is the queue.
    """
    command: tuple[str, ...] = flags.pop("command")
    if tasks_file is not None:
        if prompt is not None or command or any(v not in (None, ()) for v in flags.values()):
            raise click.UsageError("--file cannot be combined with a prompt or other task options")
        requests = read_tasks_file(tasks_file)
        try:
            planned = plan(app.store, requests, app.settings)
        except InvalidTask as e:
            raise InvalidTask(f"{tasks_file}: {e}") from None
    else:
        if prompt is None and not command:
            raise click.UsageError("give a PROMPT, --command CMD or --file FILE")
        if prompt is not None and command:
            raise click.UsageError("give a PROMPT or --command, not both")
        requests = [
            TaskRequest(
                prompt=_read_prompt(prompt),
                command=(command[0] if len(command) == 1 else list(command)) if command else None,
                runtime=flags["runtime"],
                priority=flags["priority"],
                repo=flags["repo"],
                after=list(flags["after"]),
                tags=list(flags["tag"]),
                max_attempts=flags["max_attempts"],
                timeout=flags["timeout"],
                budget_usd=flags["budget_usd"],
                model=flags["model"],
                image=flags["image"],
                name=flags["name"],
                env=_env_pairs(flags["env"]),
                idempotency_key=flags["idempotency_key"],
                retry_on_exit=flags["retry_on_exit"],
                **permission_fields(flags),
                **isolation_fields(flags),
            )
        ]
        planned = plan(app.store, requests, app.settings)
    ids = submit(app.store, planned)
    if as_json:
        echo_data({"task_ids": ids}, True, str)
    else:
        click.echo("\n".join(ids))


def _list_rows(tasks: list[TaskState]) -> list[list[Any]]:
    return [
        [
            x.task_id,
            state_style(x.state) + denied_note(x),
            x.definition.priority,
            x.definition.runtime,
            x.attempt,
            duration(task_duration(x)),
            f"${x.cost_usd:.4f}",
            describe(x),
        ]
        for x in tasks
    ]


@task.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(TASK_STATES))
@click.option("--priority", "priorities", multiple=True, type=click.IntRange(1, 5))
@json_option
@pass_app
def list_cmd(app: App, states: tuple[str, ...], priorities: tuple[int, ...], as_json: bool) -> None:
    """List tasks (oldest first), optionally only some states or priorities.

    Finished tasks (completed, dead-lettered, cancelled) are read from their summaries, and
    only when the states asked for include them."""
    state = fleet_state(app)
    wanted = all_tasks(app, state) if not states or EVICTED_STATES & set(states) else None
    tasks = [
        x
        for x in sorted(
            state.tasks.values() if wanted is None else wanted, key=lambda x: x.submitted_at
        )
        if (not states or x.state in states)
        and (not priorities or x.definition.priority in priorities)
    ]
    if as_json:
        echo_data([to_builtins(x) for x in tasks], True, str)
        return
    headers = ["ID", "STATE", "P", "RUNTIME", "ATT", "TIME", "COST", "WHAT"]
    click.echo(table(headers, _list_rows(tasks)) if tasks else "no tasks")


def _show(x: TaskState) -> str:
    d = x.definition
    prompt = redact(" ".join((d.prompt or "").split()))
    prompt = prompt if len(prompt) <= 200 else prompt[:199] + "…"
    what = f"command: {' '.join(d.command)}" if d.command else f"prompt: {prompt}"
    lines = [
        f"task {x.task_id}" + (f" ({d.name})" if d.name else ""),
        f"state: {state_style(x.state)}{ending_note(x)}",
        f"runtime: {d.runtime}   priority: {d.priority}   attempts: {x.attempt}/{d.max_attempts}",
        what,
        f"submitted: {stamp(x.submitted_at)}   finished: {stamp(x.finished_at)}",
        f"cost: ${x.cost_usd:.4f}"
        + (f" of ${d.budget_usd:.4f}" if d.budget_usd is not None else "")
        + (" so far" if x.state in ("assigned", "running") else "")
        + f"   tokens: {x.input_tokens} in, {x.output_tokens} out",
    ]
    for label, value in (
        ("repo", d.repo),
        ("cwd", d.cwd),
        ("after", ", ".join(d.after)),
        ("tags", ", ".join(d.tags)),
        ("timeout", d.timeout),
        ("retry on exit", "yes" if d.retry_on_exit else ""),
        ("model", d.model),
        ("image", d.image),
        ("network", d.network if d.runtime == "container" else None),
        ("worktree", x.workspace),
        ("branch", x.branch),
        ("session", x.session_id),
        ("agent", x.agent_id),
        ("log", x.log_path),
        ("progress", x.progress),
        ("result", x.result),
    ):
        if value:
            lines.append(f"{label}: {value}")
    lines += permission_lines(x)
    lines += isolation_lines(d)
    if x.history:
        rows = [
            [
                r.attempt,
                state_style(r.outcome),
                r.agent_id or "-",
                stamp(r.started_at),
                duration(r.finished_at - r.started_at if r.finished_at and r.started_at else None),
                f"${r.cost_usd:.4f}",
                r.failure or "",
                (r.reason or "")[:60],
            ]
            for r in x.history
        ]
        head = ["ATTEMPT", "OUTCOME", "AGENT", "STARTED", "TOOK", "COST", "FAILURE", "REASON"]
        lines += ["", table(head, rows)]
    return "\n".join(lines)


@task.command("show")
@click.argument("task_id")
@json_option
@pass_app
def show_cmd(app: App, task_id: str, as_json: bool) -> None:
    """Show one task: definition, state, attempts, log path, tool calls waiting for approval."""
    state = fleet_state(app)
    x = task_or_fail(state, task_id, app)
    echo_data(
        to_builtins(x) if as_json else x, as_json, lambda x: _show(x) + approval_note(state, x)
    )


@task.command("logs")
@click.argument("task_id")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Keep printing as the task runs, through its retries, until it has ended.",
)
@click.option("--attempt", type=click.IntRange(1), help="Which attempt (default: the latest).")
@click.option(
    "--raw", is_flag=True, help="A claude task: Claude Code's stream-json lines as written."
)
@pass_app
def logs_cmd(app: App, task_id: str, follow: bool, attempt: int | None, raw: bool) -> None:
    """Print the output of a task's attempt (secrets masked); a claude task's as a transcript."""
    position = app.store.last_id() or "0-0"  # the state below is at least this recent
    x = task_or_fail(fleet_state(app), task_id, app)
    if x.attempt == 0 and not follow:
        raise NotFound(f"task {task_id} has not started yet ({x.state})")
    try:
        if not follow:
            print_attempt(log_path(app, x, attempt), x, follow=False, raw=raw)
        elif attempt is None:
            follow_task(app, task_id, max(x.attempt, 1), raw=raw)
        else:
            follow_attempt(app, x, attempt, position, raw=raw)
    except KeyboardInterrupt:
        return


def _control(app: App, event: t.Event, what: str) -> str:
    app.store.append(event)
    if daemon_info(app).running:
        return f"{what} requested"
    return f"{what} recorded; no daemon is running: it takes effect when one starts"


def request_cancel(app: App, task_id: str) -> str:
    """Append a task's cancel request (`forge task cancel`, `forge top`); says what was done."""
    x = task_or_fail(fleet_state(app), task_id, app)
    if x.terminal:
        raise ForgeError(f"task {task_id} is already {x.state}: nothing to cancel")
    event = t.TaskCancelRequested(at=time.time(), task_id=task_id)
    return _control(app, event, f"cancel of {task_id}")


def request_retry(app: App, task_id: str) -> str:
    """Append a task's retry request (`forge task retry`, `forge top`); says what was done."""
    x = task_or_fail(fleet_state(app), task_id, app)
    if x.state not in ("failed", "dead_lettered", "cancelled"):
        raise ForgeError(
            f"task {task_id} is {x.state}: "
            "only a failed, dead-lettered or cancelled task can be retried"
        )
    event = t.TaskRetryRequested(at=time.time(), task_id=task_id)
    return _control(app, event, f"retry of {task_id}")


@task.command("cancel")
@click.argument("task_id")
@pass_app
def cancel_cmd(app: App, task_id: str) -> None:
    """Cancel a task: a running agent is stopped gracefully, then forcibly."""
    click.echo(request_cancel(app, task_id))


@task.command("retry")
@click.argument("task_id")
@pass_app
def retry_cmd(app: App, task_id: str) -> None:
    """Queue a failed, dead-lettered or cancelled task again."""
    click.echo(request_retry(app, task_id))


@task.command("history")
@click.argument("task_id")
@json_option
@pass_app
def history_cmd(app: App, task_id: str, as_json: bool) -> None:
    """The task's timeline: every event about it, in log order, with times."""
    if app.store.task_index(task_id) is None:
        raise NotFound(f"unknown task id {task_id!r}")
    entries = task_history(app.store, task_id)
    if as_json:
        echo_data([{"id": e.id, **to_builtins(e.event)} for e in entries], True, str)
        return
    rows = [[stamp(e.event.at), tag_of(e.event), details(e.event, skip_task=True)] for e in entries]
    click.echo(table(["TIME", "EVENT", "DETAILS"], rows))
