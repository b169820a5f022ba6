"""How finished tasks leave the fleet state's hot part and come back (part of the pure fold).

A task that reaches an `EVICTED_STATES` state leaves `FleetState.tasks` for the packed
`FleetState.finished` map (`events.packed_map`: its final "state|attempt|epoch", as the derived
index has it), so the state and its digest grow with live work, not with history. Its events stay
in the log and the per-task index (`events.task_index`) rebuilds it on demand. A reopening event
(`task.queued` by `forge task retry`, `task.continued`) carries the task's state as its own
events made it, which brings it back.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.state import FleetState, TaskState

__all__ = ["evict", "left_pending", "restore"]


def left_pending(state: FleetState, task: TaskState) -> None:
    """A task no longer waits on its dependencies: it leaves their dependants lists."""
    for dep in task.definition.after:
        waiting = state.dependants.get(dep)
        if waiting is not None and task.task_id in waiting:
            waiting.remove(task.task_id)
            if not waiting and dep not in state.tasks:
                del state.dependants[dep]


def evict(state: FleetState, task: TaskState) -> None:
    """A finished task leaves the hot state; its final state stays in `finished`. (Callers
    may still finish updating `task`: what they set lives on in the log, not here.)"""
    task_id = task.task_id
    del state.tasks[task_id]
    epoch = "" if task.epoch is None else task.epoch
    state.finished[task_id] = f"{task.state}|{task.attempt}|{epoch}"
    state.finished_counts[task.state] = state.finished_counts.get(task.state, 0) + 1
    state.retry_requests.pop(task_id, None)
    if not state.dependants.get(task_id, True):
        del state.dependants[task_id]


def restore(state: FleetState, task_id: str, restore: dict[str, Any] | None) -> None:
    """Bring a finished task back into the hot state from the state its own events made (a
    reopening event carries it: `forge task retry`, `forge task continue`)."""
    done = state.finished.get(task_id)
    if done is None or restore is None:
        return
    try:
        task = msgspec.convert(restore, TaskState)
    except msgspec.ValidationError:
        return  # the reopening event is then an anomaly: the task is not hot
    if task.task_id != task_id or task.state != done.partition("|")[0]:
        return
    del state.finished[task_id]
    state.finished_counts[task.state] -= 1
    if not state.finished_counts[task.state]:
        del state.finished_counts[task.state]
    state.tasks[task_id] = task
