"""A submitted task never takes an id the log knows already: with random ids a collision is
unlikely, and a task lost to one would be lost silently (forge.submit)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import redis

import forge.submit as submitting
from events import types as t
from events.store import EventStore
from forge.settings import load_settings
from forge.submit import TaskRequest, new_task_id, plan, submit


def test_an_id_is_task_and_64_random_bits() -> None:
    ids = {new_task_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"task-[0-9a-f]{16}", i) for i in ids)


def _drawn(*ids: str) -> Iterator[str]:
    yield from ids
    raise AssertionError("drew more ids than expected")


def test_an_id_the_log_knows_or_the_batch_holds_twice_is_drawn_again(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EventStore(redis_client, "task-ids")
    spec = t.TaskDefinition(command=["true"])
    store.append(t.TaskSubmitted(at=time.time(), task_id="task-taken", spec=spec))
    draws = _drawn("task-taken", "task-a", "task-a", "task-b")
    monkeypatch.setattr(submitting, "new_task_id", lambda: next(draws))
    settings = load_settings(None, {})
    requests = [TaskRequest(command=["true"]), TaskRequest(command=["true"])]
    ids = submit(store, plan(store, requests, settings))
    assert sorted(ids) == ["task-a", "task-b"]
    assert {i: e.state for i, e in store.index_entries().items()} == {
        "task-taken": "queued",
        "task-a": "queued",
        "task-b": "queued",
    }
