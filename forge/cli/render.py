"""What the commands share to read the fleet and to show it: the current state, the daemon,
tables (aligned on a TTY, tab-separated otherwise), colours, times and durations."""

from __future__ import annotations

import datetime as dt
import math
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
import msgspec

from events.redact import redact
from events.replay import replay
from events.state import FleetState, TaskState
from events.task_index import TaskIndex
from forge.cli.app import App
from forge.daemon_process import DaemonFiles, PidRecord, alive
from forge.errors import DaemonError, NotFound
from forge.node import Heartbeat, read_heartbeats

__all__ = [
    "DaemonInfo",
    "all_tasks",
    "daemon_info",
    "describe",
    "duration",
    "ending_note",
    "fleet_state",
    "is_tty",
    "require_daemon",
    "stamp",
    "state_style",
    "table",
    "task_or_fail",
]

_STATE_COLOURS = {
    "completed": "green",
    "running": "cyan",
    "assigned": "cyan",
    "queued": "blue",
    "pending": "white",
    "retry_wait": "yellow",
    "failed": "red",
    "dead_lettered": "red",
    "cancelled": "magenta",
    "busy": "cyan",
    "idle": "green",
    "ready": "green",
    "paused": "yellow",
    "unhealthy": "red",
    "crashed": "red",
    "terminated": "white",
    "open": "red",
    "half_open": "yellow",
    "closed": "green",
}


def is_tty() -> bool:
    return sys.stdout.isatty()


def state_style(state: str) -> str:
    """A state name, coloured on a TTY."""
    colour = _STATE_COLOURS.get(state)
    return click.style(state, fg=colour) if colour and is_tty() else state


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned table on a TTY; tab-separated lines (header first) otherwise; secrets in
    any cell are masked."""
    cells = [[redact(str(c)) for c in row] for row in rows]
    if not is_tty():
        return "\n".join("\t".join(r) for r in [list(headers), *cells])
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(click.unstyle(cell)))

    def line(row: Sequence[str]) -> str:
        padded = [c + " " * (widths[i] - len(click.unstyle(c))) for i, c in enumerate(row)]
        return "  ".join(padded).rstrip()

    head = click.style(line(list(headers)), bold=True)
    return "\n".join([head, *(line(r) for r in cells)])


def stamp(at: float | None) -> str:
    """A wall-clock time as local ISO 8601 (seconds and milliseconds); a time no calendar
    can show (NaN, infinite, beyond the year 9999) as its number."""
    if not at:
        return "-"
    try:
        return dt.datetime.fromtimestamp(at).astimezone().isoformat(timespec="milliseconds")
    except (OverflowError, ValueError, OSError):
        return repr(at)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def describe(task: TaskState, width: int = 48) -> str:
    """A task's name, or its command or prompt, secrets masked, shortened."""
    d = task.definition
    text = d.name or (" ".join(d.command) if d.command else (d.prompt or "")).replace("\n", " ")
    text = redact(text)  # before shortening, which could cut a secret out of its shape
    return text if len(text) <= width else text[: width - 1] + "…"


def ending_note(task: TaskState) -> str:
    """How the task's last attempt ended, for its state line: `(failure: reason)` for a failed,
    waiting, dead-lettered or re-queued task, the reason of a cancel, nothing for a completed
    or running one (earlier attempts' failures belong to the attempt history)."""
    last = task.history[-1] if task.history else None
    if task.state == "cancelled":
        return f" ({task.last_reason})" if task.last_reason else ""
    if task.state in ("failed", "retry_wait", "dead_lettered"):
        failure = (last.failure if last is not None else None) or task.last_failure
        reason = task.last_reason if task.state == "dead_lettered" else None
        reason = reason or (last.reason if last is not None else None) or task.last_reason
        if failure is None:
            return f" ({reason})" if reason else ""
        return f" ({failure}: {reason})" if reason else f" ({failure})"
    if task.state == "queued" and last is not None and last.outcome == "failed":
        return f" (attempt {last.attempt} failed: {last.failure})"
    return ""


def task_duration(task: TaskState) -> float | None:
    """From the first start to the end (or now, while it runs)."""
    starts = [r.started_at for r in task.history if r.started_at]
    if not starts:
        return None
    end = task.finished_at or (None if task.terminal else time.time())
    return None if end is None else max(0.0, end - starts[0])


def fleet_state(app: App) -> FleetState:
    """The fleet's state now, replayed from the log (newest snapshot plus the tail)."""
    state, _ = replay(app.store)
    return state


def all_tasks(app: App, state: FleetState) -> list[TaskState]:
    """Every task: the hot ones from `state`, the finished ones from their summaries."""
    hot = state.tasks
    done = [x for x in TaskIndex(app.store).finished() if x.task_id not in hot]
    return [*hot.values(), *done]


def task_or_fail(state: FleetState, task_id: str, app: App | None = None) -> TaskState:
    """The task, hot or finished (a finished task is read through the per-task index, which
    needs `app`)."""
    task = state.tasks.get(task_id)
    if task is None and app is not None and task_id in state.finished:
        task = TaskIndex(app.store).task(task_id)
    if task is None:
        raise NotFound(f"unknown task id {task_id!r}")
    return task


class DaemonInfo(msgspec.Struct, kw_only=True):
    """Whether a daemon runs on this namespace, and what is known of it."""

    running: bool
    local: PidRecord | None = None  # this home's daemon process, if it runs
    heartbeat: Heartbeat | None = None  # this home's node's, else the latest of any node's
    nodes: list[Heartbeat] = []  # the heartbeat of every node that published one lately
    stale_pid: int | None = None  # a dead daemon's pid file, just cleaned up


def daemon_info(app: App) -> DaemonInfo:
    """The daemon as seen from here: this home's pid file and the namespace's heartbeat."""
    local, stale = DaemonFiles(app.settings.home_path).running()
    host = socket.gethostname()
    beats = [
        b
        for b in read_heartbeats(app.redis, app.settings.redis.namespace)
        # (not a daemon of this host that died: its heartbeat's TTL has not run out)
        if b.host != host or alive(b.pid, b.create_time)
    ]
    mine = [b for b in beats if local is not None and b.node_id == local.node_id]
    latest = max(beats, key=lambda b: b.updated_at, default=None)
    beat = mine[0] if mine else latest
    return DaemonInfo(
        running=local is not None or beat is not None,
        local=local,
        heartbeat=beat,
        nodes=beats,
        stale_pid=stale.pid if stale is not None else None,
    )


def require_daemon(app: App) -> DaemonInfo:
    """The running daemon; raises DaemonError when none runs to act on a request."""
    info = daemon_info(app)
    if not info.running:
        raise DaemonError("no daemon is running (start one with `forge daemon start`)")
    return info
