"""What `forge task logs` prints: an attempt's output, followed through retries.

A shell task's output is printed as it was written (secrets masked). A claude task's log is
Claude Code's stream-json; unless `--raw` is asked for, it is rendered as a transcript
(`forge.runtimes.claude_transcript`), one renderer per attempt.
"""

from __future__ import annotations

import os
import threading

import click

from actors.runtime import is_transient
from events import types as t
from events.state import TaskState
from forge.cli.app import App
from forge.cli.render import fleet_state, task_or_fail
from forge.errors import NotFound
from forge.runtimes import iter_log_lines, status_path_for
from forge.runtimes.claude_transcript import TranscriptRenderer

__all__ = ["follow_attempt", "follow_task", "log_path", "print_attempt"]


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


def print_attempt(
    path: str, x: TaskState, *, follow: bool, raw: bool, stop: threading.Event | None = None
) -> None:
    """Print one attempt's log: as written, or as a transcript for a claude task; with `follow`,
    until its status file says it ended or `stop` is set (the log recorded its end)."""
    if not _transcript(x, raw):
        for line in iter_log_lines(path, follow=follow, stop=stop):
            click.echo(line)
        return
    renderer = TranscriptRenderer()
    for line in iter_log_lines(path, follow=follow, stop=stop, redacted=False):
        for out in renderer.feed(line):
            click.echo(out)
    if os.path.exists(status_path_for(path)):  # the attempt has ended: say if it gave no result
        for out in renderer.finish():
            click.echo(out)


def _runs(x: TaskState, attempt: int) -> bool:
    """Whether attempt `attempt` of the task runs (as far as the state `x` knows)."""
    return attempt == x.attempt and x.state in ("assigned", "running")


def _ends(event: t.Event, task_id: str, attempt: int) -> bool:
    """Whether `event` records that attempt `attempt` of the task is over."""
    if getattr(event, "task_id", None) != task_id:
        return False
    if isinstance(event, t.TaskCompleted | t.TaskFailed):
        return event.attempt >= attempt
    if isinstance(event, t.TaskAssigned):
        return event.attempt > attempt
    return isinstance(event, t.TaskCancelled | t.TaskDeadLettered)


def follow_attempt(app: App, x: TaskState, attempt: int, after: str, *, raw: bool) -> None:
    """Print attempt `attempt` of task `x` (as the log stood at `after`) as it is written, until
    it ends: by its status file, or by the log recording its end — an attempt whose wrapper died
    before writing a status file is followed no longer than that."""
    path = log_path(app, x, attempt)
    if not _runs(x, attempt):
        print_attempt(path, x, follow=False, raw=raw)  # over already
        return
    stop = threading.Event()

    def watch() -> None:
        try:
            for entry in app.store.tail(after=after, block_ms=500, stop=stop):
                if _ends(entry.event, x.task_id, attempt):
                    stop.set()
        except Exception:  # the log is unreachable: the status file alone tells
            return

    watcher = threading.Thread(target=watch, name="forge-logs-watch", daemon=True)
    watcher.start()
    try:
        print_attempt(path, x, follow=True, raw=raw, stop=stop)
    finally:
        stop.set()


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
        read_at = app.store.last_id() or "0-0"  # the state below is at least this recent
        x = task_or_fail(fleet_state(app), task_id, app)
        if n <= x.attempt:
            path = log_path(app, x, n)
            if os.path.exists(path):
                if n > first:
                    click.echo(f"--- attempt {n} ---")
                follow_attempt(app, x, n, read_at, raw=raw)
                n += 1
                continue
            if not _runs(x, n):
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
