"""What the dashboard shows, as JSON-ready data built from a `FleetState` (secrets masked).

Pure functions of the state (and of log entries for a task's timeline): the same view is
built for the fleet now and for the fleet replayed at any past moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from events.redact import redact
from events.state import FleetState, TaskState, to_builtins
from events.store import LogEntry
from events.transitions import TASK_STATES
from forge.cli.approvals_cmd import waiting_approvals
from forge.cli.events_cmd import render_replay_summary, replay_summary
from forge.cli.eventview import details, tag_of
from forge.cli.render import describe

__all__ = ["fleet_view", "moment_view", "task_detail", "task_rows"]

QUEUE_SHOWN = 50  # tasks listed per priority; the count says how many wait
TASKS_SHOWN = 500  # rows of the task list; the count says how many matched


def _started_at(task: TaskState) -> float | None:
    current = task.current
    return current.started_at if current is not None else None


def _row(task: TaskState) -> dict[str, Any]:
    d = task.definition
    return {
        "task_id": task.task_id,
        "what": describe(task, 80),
        "state": task.state,
        "runtime": d.runtime,
        "priority": d.priority,
        "attempt": task.attempt,
        "agent_id": task.agent_id,
        "cost_usd": round(task.cost_usd, 6),
        "submitted_at": task.submitted_at,
        "started_at": _started_at(task),
        "finished_at": task.finished_at,
        "waiting_approvals": len(task.pending_approvals),
    }


def fleet_view(state: FleetState) -> dict[str, Any]:
    """The fleet at the state's position: agents, queue by priority, running tasks, breakers,
    approvals waiting, spend and task counts."""
    agents = [
        {
            "agent_id": a.agent_id,
            "status": a.status,
            "runtime": a.runtime,
            "tags": list(a.tags),
            "task_id": a.task_id,
            "attempt": a.attempt,
        }
        for a in sorted(state.agents.values(), key=lambda a: a.agent_id)
        if a.status not in ("terminated", "crashed")
    ]
    queue = []
    for priority in sorted(state.queues):
        ids = list(state.queues[priority])
        shown = [_row(state.tasks[i]) for i in ids[:QUEUE_SHOWN] if i in state.tasks]
        queue.append({"priority": priority, "count": len(ids), "tasks": shown})
    running = [_row(x) for x in state.tasks.values() if x.state in ("assigned", "running")]
    breakers = [
        {"name": b.name, "state": b.state, "until": b.until, "reason": b.reason}
        for b in sorted(state.breakers.values(), key=lambda b: b.name)
    ]
    return {
        "position": state.position,
        "events": state.event_count,
        "last_at": state.last_at,
        "daemon": {
            "running": state.daemon_running,
            "epoch": state.daemon_epoch,
            "node_id": state.daemon_node,
        },
        "agents": agents,
        "queue": queue,
        "queued": state.queue_length(),
        "running": running,
        "breakers": breakers,
        "approvals": [to_builtins(a) for a in waiting_approvals(state)],
        "spend": {
            "spent_usd": round(state.total_cost_usd, 6),
            "limit_usd": state.budget_limit_usd,
            "exhausted": state.budget_exhausted,
        },
        "tasks": state.counts(),
        "anomalies": state.anomalies,
    }


def moment_view(state: FleetState) -> dict[str, Any]:
    """The fleet replayed at a moment: the same summary `forge events replay --until`
    prints for it (text and data), and the fleet view."""
    summary = replay_summary(state)
    return {
        "position": state.position,
        "summary": summary,
        "summary_text": redact(render_replay_summary(summary)),
        "fleet": fleet_view(state),
    }


def _matches(task: TaskState, text: str) -> bool:
    d = task.definition
    haystack = [task.task_id, d.name or "", d.prompt or "", " ".join(d.command or []), *d.tags]
    return any(text in part.casefold() for part in haystack)


def task_rows(
    tasks: Sequence[TaskState],
    states: Iterable[str] = (),
    runtime: str | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The tasks (hot and finished) that match the filters (any of `states`, the runtime, a
    case-insensitive text in the id, name, prompt, command or tags), newest first."""
    wanted = set(states)
    needle = (text or "").strip().casefold()
    found = [
        x
        for x in tasks
        if (not wanted or x.state in wanted)
        and (not runtime or x.definition.runtime == runtime)
        and (not needle or _matches(x, needle))
    ]
    found.sort(key=lambda x: (x.submitted_at, x.task_id), reverse=True)
    return {
        "total": len(tasks),
        "matched": len(found),
        "tasks": [_row(x) for x in found[:TASKS_SHOWN]],
        "states": list(TASK_STATES),
        "runtimes": sorted({x.definition.runtime for x in tasks}),
    }


def task_detail(task: TaskState, history: Iterable[LogEntry]) -> dict[str, Any]:
    """One task: its row, its definition and attempts (secrets masked), and the timeline of
    every event about it, in log order."""
    timeline = [
        {
            "id": entry.id,
            "at": entry.event.at,
            "type": tag_of(entry.event),
            "details": details(entry.event, skip_task=True),
        }
        for entry in history
    ]
    return {
        **_row(task),
        "name": task.definition.name,
        "definition": to_builtins(task.definition),
        "attempts": [to_builtins(r) for r in task.history],
        "branch": task.branch,
        "workspace": task.workspace,
        "last_failure": task.last_failure,
        "last_reason": redact(task.last_reason or ""),
        "progress": redact(task.progress or ""),
        "result": redact(task.result or ""),
        "timeline": timeline,
    }
