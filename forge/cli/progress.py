"""The live display of a batch, and its summary table.

On a TTY the display is a block of one row per task, redrawn in place on every change; else
it is one line per change (`time  task  state  attempt  agent`), which suits logs and CI.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import click

from events.state import FleetState, TaskState
from forge.batch import BatchResult
from forge.cli.render import duration, state_style, table, task_duration

__all__ = ["Progress", "summary", "summary_data"]


def _label(task: TaskState) -> str:
    return task.definition.name or task.task_id


def _what(task: TaskState, width: int = 40) -> str:
    d = task.definition
    text = (" ".join(d.command) if d.command else d.prompt or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


class Progress:
    """Prints a batch's progress to `out` (a TTY: redrawn block; else one line per change)."""

    def __init__(self, task_ids: list[str] | None = None, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.task_ids = task_ids
        self.seen: dict[str, tuple[str, int]] = {}
        self.drawn = 0
        self.started = time.monotonic()

    def __call__(self, state: FleetState, changed: set[str]) -> None:
        if self.task_ids is None:
            self.task_ids = sorted(changed, key=lambda i: state.tasks[i].submitted_at)
        if self.tty:
            self._redraw(state)
        else:
            self._lines(state, changed)

    def _lines(self, state: FleetState, changed: set[str]) -> None:
        elapsed = time.monotonic() - self.started
        for task_id in [i for i in self.task_ids or () if i in changed]:
            task = state.tasks[task_id]
            key = (task.state, task.attempt)
            if self.seen.get(task_id) == key:
                continue
            self.seen[task_id] = key
            extra = ""
            if task.state in ("assigned", "running") and task.agent_id:
                extra = f" on {task.agent_id}"
            elif task.state in ("failed", "retry_wait", "dead_lettered") and task.last_failure:
                extra = f" ({task.last_failure}: {task.last_reason or ''})".rstrip()
            what = f"{_label(task):<16} {task.state:<13} attempt {task.attempt}"
            line = f"{elapsed:6.2f}s  {what}{extra}"
            click.echo(line, file=self.out)

    def _redraw(self, state: FleetState) -> None:
        assert self.task_ids is not None
        tasks = [state.tasks[i] for i in self.task_ids]
        counts: dict[str, int] = {}
        for task in tasks:
            counts[task.state] = counts.get(task.state, 0) + 1
        head = f"{duration(time.monotonic() - self.started):>6}  " + "  ".join(
            f"{state_style(s)} {n}" for s, n in sorted(counts.items())
        )
        rows = [
            [
                _label(x),
                f"p{x.definition.priority}",
                state_style(x.state),
                x.attempt,
                x.agent_id if x.state in ("assigned", "running") else "",
                f"last failure: {x.last_failure}" if x.last_failure else _what(x),
            ]
            for x in tasks
        ]
        block = head + "\n" + table(["TASK", "PRIO", "STATE", "ATT", "AGENT", "NOTE"], rows)
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
        self.out.write(block + "\n")
        self.out.flush()
        self.drawn = block.count("\n") + 1


def summary_data(result: BatchResult) -> list[dict[str, Any]]:
    return [
        {
            "task_id": x.task_id,
            "name": x.definition.name,
            "state": x.state,
            "attempts": x.attempt,
            "seconds": task_duration(x),
            "cost_usd": x.cost_usd,
            "failure": x.last_failure if x.state != "completed" else None,
        }
        for x in result.tasks
    ]


def summary(result: BatchResult) -> str:
    rows = [
        [
            x.definition.name or x.task_id,
            state_style(x.state),
            x.attempt,
            duration(task_duration(x)),
            f"${x.cost_usd:.4f}",
            "" if x.state == "completed" else (x.last_reason or x.last_failure or "")[:50],
        ]
        for x in result.tasks
    ]
    done = sum(1 for x in result.tasks if x.state == "completed")
    total_cost = sum(x.cost_usd for x in result.tasks)
    foot = f"{done}/{len(rows)} tasks completed, total cost ${total_cost:.4f}"
    return table(["TASK", "STATE", "ATTEMPTS", "DURATION", "COST", "NOTE"], rows) + "\n" + foot
