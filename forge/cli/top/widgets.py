"""The pieces of `forge top`'s screen: a table updated row by row, and the rows of each section.

`KeyedTable` is a Textual `DataTable` (which draws only the rows in view) keyed by task, agent
or approval id: a redraw touches only the cells whose text changed, so an event costs a few
cell updates, never a rebuild of the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from events.approvals import ApprovalState
from events.redact import redact
from events.state import AgentState, BreakerState, TaskState
from forge.cli.render import describe, duration, ending_note
from forge.cli.top.model import TopModel

__all__ = [
    "KeyedTable",
    "agent_row",
    "approval_row",
    "breaker_row",
    "finished_row",
    "queue_row",
    "running_row",
    "summary",
]

Cell = str | Text

_COLOURS = {
    "queued": "cyan",
    "assigned": "yellow",
    "running": "yellow",
    "busy": "yellow",
    "completed": "green",
    "idle": "green",
    "ready": "green",
    "closed": "green",
    "allowed": "green",
    "failed": "red",
    "dead_lettered": "red",
    "crashed": "red",
    "unhealthy": "red",
    "open": "red",
    "denied": "red",
    "cancelled": "magenta",
    "paused": "magenta",
    "half_open": "yellow",
    "retry_wait": "yellow",
}


def styled(state: str) -> Text:
    return Text(state, style=_COLOURS.get(state, ""))


def one_line(text: str, width: int) -> str:
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class KeyedTable(DataTable[Cell]):
    """A table of rows keyed by id that is updated cell by cell."""

    def __init__(self, columns: Sequence[str], *, id: str) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = list(columns)
        self._cells: dict[str, list[Cell]] = {}

    def on_mount(self) -> None:
        for name in self._columns:
            self.add_column(name, key=name)

    def put(self, key: str, cells: Sequence[Cell]) -> None:
        """Add the row, or update the cells of it that changed."""
        old = self._cells.get(key)
        if old is None:
            self._cells[key] = list(cells)
            self.add_row(*cells, key=key)
            return
        for i, cell in enumerate(cells):
            if old[i] != cell:
                old[i] = cell
                self.update_cell(key, self._columns[i], cell, update_width=True)

    def drop(self, key: str) -> None:
        if self._cells.pop(key, None) is not None:
            self.remove_row(key)

    def keep_only(self, keys: Iterable[str]) -> None:
        wanted = set(keys)
        for key in [k for k in self._cells if k not in wanted]:
            self.drop(key)

    def keys(self) -> list[str]:
        """The row keys in the order shown."""
        return [str(row.key.value) for row in self.ordered_rows]

    def order_by(self, keys: Sequence[str]) -> None:
        """Show the rows in the order of `keys` (rows not in it go last)."""
        if self.keys() == [k for k in keys if k in self._cells]:
            return
        rank = {k: i for i, k in enumerate(keys)}
        first = self._columns[0]  # every row shows its key in the first column
        self.sort(first, key=lambda cell: rank.get(str(cell), len(rank)))

    def selected(self) -> str | None:
        """The key of the row under the cursor."""
        if not self.row_count:
            return None
        row = min(max(self.cursor_row, 0), self.row_count - 1)
        value = self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return None if value is None else str(value)

    def __contains__(self, key: object) -> bool:
        return key in self._cells


# -- rows --------------------------------------------------------------------------------

AGENT_COLUMNS = ("agent", "state", "runtime", "task", "elapsed", "rss", "spend")
RUNNING_COLUMNS = ("task", "state", "agent", "attempt", "elapsed", "spend", "what", "progress")
QUEUE_COLUMNS = ("task", "prio", "waiting", "what")
FINISHED_COLUMNS = ("task", "state", "took", "spend", "what", "why")
APPROVAL_COLUMNS = ("approval", "task", "tool", "call", "expires")
BREAKER_COLUMNS = ("breaker", "state", "failures", "reason")


def _money(usd: float) -> str:
    return f"${usd:.4f}" if usd else "-"


def _mib(rss: int | None) -> str:
    return "-" if rss is None else f"{rss / 2**20:.0f} MiB"


def agent_row(agent: AgentState, model: TopModel, now: float, rss: int | None) -> list[Cell]:
    task = model.state.tasks.get(agent.task_id) if agent.task_id else None
    since = agent.updated_at
    if task is not None and task.current is not None and task.current.started_at:
        since = task.current.started_at
    return [
        agent.agent_id,
        styled(agent.status),
        agent.runtime,
        agent.task_id or "-",
        duration(now - since) if since else "-",
        _mib(rss),
        _money(model.agent_spend.get(agent.agent_id, 0.0)),
    ]


def running_row(task: TaskState, now: float) -> list[Cell]:
    rec = task.current
    started = rec.started_at if rec is not None else None
    return [
        task.task_id,
        styled(task.state),
        task.agent_id or "-",
        str(task.attempt),
        duration(now - started) if started else "-",
        _money(task.cost_usd),
        describe(task, 32),
        one_line(task.progress or "", 60),
    ]


def queue_row(task: TaskState, now: float) -> list[Cell]:
    note = ending_note(task)
    return [
        task.task_id,
        str(task.definition.priority),
        duration(now - task.submitted_at) if task.submitted_at else "-",
        describe(task, 48) + note,
    ]


def finished_row(task: TaskState) -> list[Cell]:
    starts = [r.started_at for r in task.history if r.started_at]
    took = task.finished_at - starts[0] if starts and task.finished_at else None
    return [
        task.task_id,
        styled(task.state),
        duration(took),
        _money(task.cost_usd),
        describe(task, 32),
        one_line(ending_note(task).strip(" ()"), 60),
    ]


def approval_row(a: ApprovalState, now: float) -> list[Cell]:
    left = a.expires_at - now
    return [
        a.approval_id,
        a.task_id,
        a.tool,
        one_line(a.summary, 48),
        duration(left) if left > 0 else "expired",
    ]


def breaker_row(b: BreakerState) -> list[Cell]:
    return [b.name, styled(b.state), str(b.failures), one_line(b.reason or "", 40)]


def summary(model: TopModel, now: float, error: str | None) -> Text:
    """The lines above the tables: the daemon, the counts, completion and spend."""
    state = model.state
    text = Text()
    if error:
        text.append(f"log unreachable: {one_line(error, 100)}\n", style="bold red")
    daemon = f"daemon up (epoch {state.daemon_epoch})" if state.daemon_running else "no daemon"
    text.append(daemon, style="green" if state.daemon_running else "yellow")
    text.append(f"  ·  {state.event_count} events  ·  tasks: ")
    counts = model.counts
    order = ("queued", "pending", "assigned", "running", "retry_wait", "completed", "failed")
    shown = [s for s in order if counts.get(s)] + sorted(s for s in counts if s not in order)
    text.append(", ".join(f"{counts[s]} {s}" for s in shown) or "none")
    done, ended = model.completion()
    rate = f"{100 * done / ended:.0f}%" if ended else "-"
    per_min = model.completions_since(now - 300) / 5
    text.append(f"\ncompleted {done}/{ended} ended ({rate})  ·  {per_min:.1f}/min over 5 min")
    text.append(f"  ·  spend ${state.total_cost_usd:.4f}")
    if state.budget_limit_usd is not None:
        text.append(f" of ${state.budget_limit_usd:.2f}")
        if state.budget_exhausted:
            text.append(" (exhausted)", style="bold red")
    queues = model.queue_by_priority()
    text.append("  ·  queue " + " ".join(f"P{p}:{n}" for p, n in queues.items()))
    return text
