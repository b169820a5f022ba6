"""What `forge task logs` prints: an attempt's output, followed through retries.

A shell task's output is printed as it was written (secrets masked). A claude task's log is
Claude Code's stream-json; unless `--raw` is asked for, it is rendered as a transcript
(`forge.runtimes.claude_transcript`), one renderer per attempt.
"""

from __future__ import annotations

import os

import click

from actors.runtime import is_transient
from events.state import TaskState
from forge.cli.app import App
from forge.cli.render import fleet_state, task_or_fail
from forge.errors import NotFound
from forge.runtimes import iter_log_lines, status_path_for
from forge.runtimes.claude_transcript import TranscriptRenderer

__all__ = ["follow_task", "log_path", "print_attempt"]


def log_path(app: App, x: TaskState, attempt: int | None) -> str:
    """Where attempt `attempt` (default: the latest) of the task wrote its output."""
    n = attempt or x.attempt
    if n < 1 or n > x.attempt:
        raise NotFound(f"task {x.task_id} has no attempt {n} (attempts so far: {x.attempt})")
    if n == x.attempt and x.log_path:
        return x.log_path
    return os.path.join(app.settings.home_path / "logs", x.task_id, f"attempt-{n}.log")


def _transcript(x: TaskState, raw: bool) -> bool:
    return x.definition.runtime == "claude" and not raw


def print_attempt(path: str, x: TaskState, *, follow: bool, raw: bool) -> None:
    """Print one attempt's log: as written, or as a transcript for a claude task."""
    if not _transcript(x, raw):
        for line in iter_log_lines(path, follow=follow):
            click.echo(line)
        return
    renderer = TranscriptRenderer()
    for line in iter_log_lines(path, follow=follow, redacted=False):
        for out in renderer.feed(line):
            click.echo(out)
    if os.path.exists(status_path_for(path)):  # the attempt has ended: say if it gave no result
        for out in renderer.finish():
            click.echo(out)


def _settled(x: TaskState) -> bool:
    """The task has ended for good (a transient failure is followed by a retry)."""
    if not x.terminal:
        return False
    return x.state != "failed" or not is_transient(x.last_failure)  # type: ignore[arg-type]


def follow_task(app: App, task_id: str, first: int, *, raw: bool) -> None:
    """Print each attempt's log as it is written, from attempt `first` on, until the task has
    ended; between attempts, wait on the log for the task's next event (no polling)."""
    n = first
    position = app.store.last_id() or "0-0"
    while True:
        x = task_or_fail(fleet_state(app), task_id, app)
        if n <= x.attempt:
            path = log_path(app, x, n)
            if os.path.exists(path):
                if n > first:
                    click.echo(f"--- attempt {n} ---")
                print_attempt(path, x, follow=True, raw=raw)
                n += 1
                continue
            if n < x.attempt or x.state not in ("assigned", "running"):
                n += 1  # that attempt ended without writing a log (it could not start)
                continue
        elif _settled(x):
            return
        for entry in app.store.tail(after=position, block_ms=1000):
            position = entry.id
            if getattr(entry.event, "task_id", None) == task_id:
                break
        else:  # pragma: no cover - tail only ends when told to stop
            return
