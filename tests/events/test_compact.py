"""A state compacted after a backlog is the same state (events.state.FleetState.compact)."""

from __future__ import annotations

from events import types as t
from events.projection import apply
from events.state import FleetState


def _state() -> FleetState:
    state = FleetState()
    spec = t.TaskDefinition(command=["true"])
    for i in range(8):
        apply(state, t.TaskSubmitted(at=1.0, task_id=f"t{i}", spec=spec))
    for i in range(5):  # five finish (they leave the hot state), three stay queued
        apply(state, t.TaskAssigned(at=2.0, task_id=f"t{i}", attempt=1, agent_id="a", epoch=1))
        apply(state, t.TaskCompleted(at=3.0, task_id=f"t{i}", attempt=1, agent_id="a"))
    return state


def test_compacting_changes_no_content_and_no_ordering() -> None:
    state = _state()
    before = state.copy()
    keys = list(state.finished)
    state.compact(3)
    assert state.same_as(before)
    assert list(state.finished) == keys
    assert list(state.queued()) == ["t5", "t6", "t7"]


def test_the_newest_finished_entries_get_keys_of_their_own() -> None:
    state = _state()
    old = list(state.finished)
    state.compact(2)
    new = list(state.finished)
    assert [a is b for a, b in zip(old, new, strict=True)] == [True, True, True, False, False]


def test_compacting_more_than_there_is_takes_them_all() -> None:
    state = _state()
    before = state.copy()
    state.compact(100)
    assert state.same_as(before)
