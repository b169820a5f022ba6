"""A one-shot batch: submit tasks, run a Fleet in this process until every one of them has
ended, and stop it. `forge run` and the demo are built on it; no daemon is involved.

The batch watches the log itself (a tail folded into its own copy of the projection), so a
progress display sees every state change in log order, exactly as a replay would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from actors.fleet import Fleet
from actors.policy import BREAKER_FAILURES, OrchestratorConfig
from actors.runtime import RuntimeAdapter, Workspaces, is_transient
from events.projection import apply
from events.replay import replay
from events.state import FleetState, TaskState
from events.store import EventStore
from events.task_index import TaskIndex
from forge.errors import ForgeError
from forge.submit import PlannedTask, submit

__all__ = ["BatchResult", "finished", "run_batch"]

OnChange = Callable[[FleetState, set[str]], None]


def finished(task: TaskState) -> bool:
    """Whether a task has ended for good: a transient failure is always followed by a retry,
    a requeue or a dead-lettering, so it is not an end."""
    if task.state in ("completed", "dead_lettered", "cancelled"):
        return True
    return task.state == "failed" and not (
        is_transient(task.last_failure)  # type: ignore[arg-type]
        or task.last_failure in BREAKER_FAILURES
    )


def _keep_watched(view: FleetState, tasks: dict[str, TaskState]) -> None:
    """Put the batch's own finished tasks back into the watcher's view (only shown, never
    compared or saved: the view may then differ from the log's hot state)."""
    for task_id, task in tasks.items():
        if view.finished.pop(task_id, None) is not None:
            view.finished_counts[task.state] = view.finished_counts.get(task.state, 1) - 1
        view.tasks[task_id] = task


class BatchResult:
    """The batch's task ids, the fleet's live (hot) state when they had all ended, and the
    log; the batch's own tasks, finished ones read back through the per-task index."""

    def __init__(self, task_ids: list[str], live: FleetState, store: EventStore) -> None:
        self.task_ids = task_ids
        self.live = live
        self.store = store
        finished = [i for i in task_ids if i not in live.tasks]
        self._finished = TaskIndex(store).tasks(finished) if finished else {}

    @property
    def tasks(self) -> list[TaskState]:
        return [self.live.tasks.get(i) or self._finished[i] for i in self.task_ids]

    @property
    def ok(self) -> bool:
        return all(t.state == "completed" for t in self.tasks)


def run_batch(
    store: EventStore,
    runtimes: Mapping[str, RuntimeAdapter],
    config: OrchestratorConfig,
    planned: Sequence[PlannedTask],
    on_change: OnChange | None = None,
    workspaces: Workspaces | None = None,
) -> BatchResult:
    """Submit `planned`, run them to their end with an in-process fleet, and stop it."""
    task_ids = submit(store, planned)
    watched = set(task_ids)
    view, _ = replay(store)
    _keep_watched(view, TaskIndex(store).tasks([i for i in task_ids if i in view.finished]))
    if on_change is not None:
        on_change(view, set(watched))
    fleet = Fleet(store, runtimes, config, workspaces=workspaces).start()
    halt = threading.Event()

    def watchdog() -> None:  # the orchestrator sets `stopped` also when it fails
        fleet.stopped.wait()
        halt.set()

    threading.Thread(target=watchdog, name="forge-batch-watchdog", daemon=True).start()
    try:
        if not all(finished(view.tasks[i]) for i in watched):
            for entry in store.tail(after=view.position, block_ms=200, stop=halt):
                task_id = getattr(entry.event, "task_id", None)
                mine = view.tasks.get(task_id) if task_id in watched else None
                apply(view, entry.event)
                view.position = entry.id
                if mine is not None and task_id in view.finished:
                    _keep_watched(view, {mine.task_id: mine})
                if task_id in watched and on_change is not None:
                    on_change(view, {task_id})
                if all(finished(view.tasks[i]) for i in watched):
                    break
        if fleet.stopped.is_set():
            raise ForgeError("the orchestrator stopped before the batch ended (see the log)")
        live = fleet.hot_state()  # (not `state()`: O(the namespace's history))
    finally:
        halt.set()
        fleet.stop(grace=config.shutdown_grace)
    return BatchResult(task_ids, live, store)
