"""What `forge top` shows: the fleet state folded from the log, and what changed since the
last redraw.

The state is built once by a replay (snapshot + tail) and then only ever changed by folding
new log entries with the pure projection (`events.projection.apply_entries`), so it agrees
with `forge events replay` at the same position. Beside it the model keeps, incrementally, what
the view needs without scanning every task on each event: task counts by state, the running
tasks, the most recently ended tasks, each agent's spend and recent completion times.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from events import types as t
from events.projection import apply_entries
from events.state import FleetState, TaskState
from events.store import LogEntry

__all__ = ["ACTIVE_STATES", "Changes", "TopModel"]

ACTIVE_STATES = frozenset({"assigned", "running"})
FINISHED_ROWS = 100  # how many recently ended tasks the view keeps
COMPLETION_TIMES = 10_000  # how many completion times are kept for the rate


@dataclass
class Changes:
    """What changed since the view last drew: which tasks and agents, and whether the small
    sections (approvals, breakers) need redrawing."""

    tasks: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    approvals: bool = False
    breakers: bool = False
    events: int = 0

    def __bool__(self) -> bool:
        return self.events > 0


class TopModel:
    """The fleet state and the figures derived from it, kept up to date entry by entry."""

    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.counts: dict[str, int] = state.counts()
        self.active: dict[str, None] = {
            x.task_id: None for x in state.tasks.values() if x.state in ACTIVE_STATES
        }
        ended = (x for x in state.tasks.values() if x.terminal)
        newest = heapq.nlargest(FINISHED_ROWS, ended, key=lambda x: x.finished_at or 0.0)
        self.finished: deque[str] = deque((x.task_id for x in newest), maxlen=FINISHED_ROWS)
        self.ended: dict[str, TaskState] = {x.task_id: x for x in newest}  # rows of `finished`
        done = sorted(
            x.finished_at for x in state.tasks.values() if x.state == "completed" and x.finished_at
        )
        self.completion_times: deque[float] = deque(done, maxlen=COMPLETION_TIMES)
        self.agent_spend: dict[str, float] = {}
        self._spend: dict[str, dict[str, float]] = {}  # task -> agent -> what it spent there
        for task in state.tasks.values():
            self._account(task)
        self._changes = Changes()

    # -- folding -----------------------------------------------------------------------

    def apply(self, entries: Sequence[LogEntry]) -> None:
        """Fold new log entries (in log order) and note what they changed."""
        if not entries:
            return
        tasks = self.state.tasks
        touched: dict[str, tuple[str | None, TaskState | None]] = {}  # id -> (state before, task)
        changes = self._changes
        for entry in entries:
            event = entry.event
            task_id = getattr(event, "task_id", None)
            if isinstance(task_id, str):
                prior = tasks.get(task_id)
                if task_id not in touched:
                    touched[task_id] = (prior.state if prior is not None else None, prior)
            apply_entries(self.state, [(entry.id, event.schema, event)])
            if isinstance(task_id, str):
                # a task that ended may leave `tasks` (finished tasks are compacted out of the
                # hot state): the view keeps the object the projection last changed
                now = tasks.get(task_id) or prior
                touched[task_id] = (touched[task_id][0], now)
            agent_id = getattr(event, "agent_id", None)
            if isinstance(agent_id, str):
                changes.agents.add(agent_id)
            if isinstance(event, t.ApprovalRequested | t.ApprovalAnswered):
                changes.approvals = True
            elif isinstance(event, t.BreakerOpened | t.BreakerHalfOpened | t.BreakerClosed):
                changes.breakers = True
            elif isinstance(event, t.TaskCompleted):
                self.completion_times.append(event.at)
        changes.events += len(entries)
        for task_id, (before, task) in touched.items():
            if task is None:
                continue
            changes.tasks.add(task_id)
            if task.agent_id:
                changes.agents.add(task.agent_id)
            self._moved(task, before)
            self._account(task)

    def task(self, task_id: str) -> TaskState | None:
        """A task the view shows: hot in the state, or one of the recently ended."""
        return self.state.tasks.get(task_id) or self.ended.get(task_id)

    def _moved(self, task: TaskState, before: str | None) -> None:
        if before == task.state:
            return
        if before is not None:
            self.counts[before] -= 1
            if not self.counts[before]:
                del self.counts[before]
        self.counts[task.state] = self.counts.get(task.state, 0) + 1
        if task.state in ACTIVE_STATES:
            self.active[task.task_id] = None
        else:
            self.active.pop(task.task_id, None)
        if not task.terminal and task.task_id in self.ended:  # retried: no longer ended
            self.finished.remove(task.task_id)
            del self.ended[task.task_id]
        if task.terminal:
            if task.task_id in self.finished:
                self.finished.remove(task.task_id)
            elif len(self.finished) == FINISHED_ROWS:
                self.ended.pop(self.finished[-1], None)
            self.finished.appendleft(task.task_id)
            self.ended[task.task_id] = task

    def _account(self, task: TaskState) -> None:
        """Re-attribute a task's spend to the agents that ran its attempts."""
        old = self._spend.pop(task.task_id, None)
        if old:
            for agent_id, cost in old.items():
                self.agent_spend[agent_id] -= cost
        new: dict[str, float] = {}
        for rec in task.history:
            if rec.cost_usd and rec.agent_id:
                new[rec.agent_id] = new.get(rec.agent_id, 0.0) + rec.cost_usd
        if new:
            self._spend[task.task_id] = new
            for agent_id, cost in new.items():
                self.agent_spend[agent_id] = self.agent_spend.get(agent_id, 0.0) + cost

    def take_changes(self) -> Changes:
        """What changed since the last call."""
        changes, self._changes = self._changes, Changes()
        return changes

    # -- views -------------------------------------------------------------------------

    def queue_head(self, limit: int) -> list[str]:
        """The first `limit` queued task ids in dispatch order."""
        out: list[str] = []
        for task_id in self.state.queued():
            if len(out) >= limit:
                break
            out.append(task_id)
        return out

    def queue_by_priority(self) -> dict[int, int]:
        return {p: len(q) for p, q in self.state.queues.items()}

    def running(self) -> Iterable[TaskState]:
        tasks = self.state.tasks
        return (tasks[x] for x in self.active)

    def completion(self) -> tuple[int, int]:
        """(completed, ended): how many tasks completed out of those that ended."""
        ended = sum(self.counts.get(s, 0) for s in ("failed", "dead_lettered", "cancelled"))
        done = self.counts.get("completed", 0)
        return done, done + ended

    def completions_since(self, since: float) -> int:
        """How many tasks completed at or after `since` (a wall-clock time)."""
        n = 0
        for at in reversed(self.completion_times):
            if at < since:
                break
            n += 1
        return n
