"""The daemon's per-task index takes each finished task's summary from the orchestrator, which
tells its indexer the final state of every task it ends: however long the backlog, no task's
events are read back to summarise it, and the summaries are those a rebuild folds. An event on
a task already ended (a merge) is not in the orchestrator's state: that task's summary is read
back, and has it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
import redis

from actors.fleet import Fleet
from events import task_index
from events import types as t
from events.state import TaskState
from events.store import EventStore, LogEntry
from events.task_index import TaskIndex
from tests.actors.fakes import FakeRuntime
from tests.actors.helpers import config

SCRIPTS: dict[str, tuple[list[str], int]] = {
    "ok": (["ok"], 1),
    "retried": (["crash", "api", "ok"], 3),
    "dead": (["crash"], 1),
}


def test_summaries_come_from_the_orchestrators_final_states_and_none_is_read_back(
    redis_client: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_index, "_MOST_OPEN", 0)  # the indexer keeps no open task's events
    read_back: list[str] = []
    reader = TaskIndex._events_of

    def spy(self: TaskIndex, task_ids: Sequence[str]) -> dict[str, list[LogEntry]]:
        read_back.extend(task_ids)
        return reader(self, task_ids)

    monkeypatch.setattr(TaskIndex, "_events_of", spy)
    store = EventStore(redis_client, "fed-summaries")
    cfg = config(tmp_path / "logs", max_agents=4, snapshot_every=25)
    fleet = Fleet(store, {"fake": FakeRuntime()}, cfg, seed=3).start()
    names = [f"{kind}-{n}" for n in range(12) for kind in SCRIPTS]
    try:
        store.append_batch(
            [
                t.TaskSubmitted(
                    at=time.time(),
                    task_id=name,
                    spec=t.TaskDefinition(
                        runtime="fake",
                        command=SCRIPTS[name.partition("-")[0]][0],
                        max_attempts=SCRIPTS[name.partition("-")[0]][1],
                    ),
                )
                for name in names
            ]
        )
        deadline = time.monotonic() + 30
        while len(fleet.hot_state().finished) < len(names):
            assert time.monotonic() < deadline, "the tasks did not all finish"
            time.sleep(0.02)
        merged = t.TaskMerged(at=time.time(), task_id="ok-3", branch="b", into="main", commit="c")
        store.append(merged)
        while fleet.hot_state().position != store.last_id():
            assert time.monotonic() < deadline, "the merge was not applied"
            time.sleep(0.02)
    finally:
        fleet.stop(grace=0.0, timeout=20)
    deadline = time.monotonic() + 20
    while redis_client.hlen(store.keys.finished_summaries) < len(names) or not read_back:
        assert time.monotonic() < deadline, "the daemon's indexer did not summarise them all"
        time.sleep(0.02)
    assert read_back == ["ok-3"]
    summaries = dict(redis_client.hgetall(store.keys.finished_summaries))
    states = {
        k.decode(): msgspec.msgpack.decode(v, type=TaskState).state for k, v in summaries.items()
    }
    assert msgspec.msgpack.decode(summaries[b"ok-3"], type=TaskState).merged_into == "main"
    assert states == {
        name: {"ok": "completed", "retried": "completed", "dead": "dead_lettered"}[
            name.partition("-")[0]
        ]
        for name in names
    }
    rebuilt = TaskIndex(store)
    rebuilt.rebuild()
    assert dict(redis_client.hgetall(store.keys.finished_summaries)) == summaries
    assert len(read_back) == 1 + len(names)  # (the rebuild read every task back)
