"""Helpers shared by the actor tests: a running fleet on the session server, and waiting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from actors.fleet import Fleet
from actors.policy import OrchestratorConfig, RetryPolicy
from actors.runtime import RuntimeAdapter, Workspaces, is_transient
from events import types as t
from events.replay import replay
from events.state import FleetState
from events.store import EventStore
from events.task_index import TaskIndex


def config(logs: Path, **overrides: Any) -> OrchestratorConfig:
    base: dict[str, Any] = {
        "node_id": "test-node",
        "logs_dir": str(logs),
        "base_env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        "retry": RetryPolicy(base_delay=0.0, max_delay=0.0, jitter=0.0),
    }
    base.update(overrides)
    return OrchestratorConfig(**base)


@contextmanager
def running_fleet(
    client: redis.Redis,
    runtimes: Mapping[str, RuntimeAdapter],
    cfg: OrchestratorConfig,
    namespace: str = "test",
    workspaces: Workspaces | None = None,
) -> Iterator[tuple[Fleet, EventStore]]:
    store = EventStore(client, namespace)
    fleet = Fleet(store, runtimes, cfg, seed=7, workspaces=workspaces).start()
    try:
        yield fleet, store
    finally:
        fleet.stop(grace=0.0, timeout=20)
        fleet.close()


def submit(store: EventStore, task_id: str, **spec: Any) -> None:
    store.append(t.TaskSubmitted(at=time.time(), task_id=task_id, spec=t.TaskDefinition(**spec)))


def wait_for(
    fleet: Fleet, predicate: Callable[[FleetState], bool], timeout: float = 20.0
) -> FleetState:
    """Poll the live state until `predicate` holds (the state is in memory: no I/O)."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        state = fleet.state()
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            summary = {k: (v.state, v.attempt, v.last_failure) for k, v in state.tasks.items()}
            raise AssertionError(f"condition not reached in {timeout} s: {summary}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def task_state(state: FleetState, task_id: str) -> str | None:
    task = state.tasks.get(task_id)
    return task.state if task is not None else None


def settled(state: FleetState, task_id: str) -> bool:
    """The task is done for good: terminal, and not a transient failure awaiting its retry."""
    task = state.tasks.get(task_id)
    if task is None or not task.terminal:
        return False
    return task.state != "failed" or not is_transient(task.last_failure)  # type: ignore[arg-type]


def all_terminal(*task_ids: str) -> Callable[[FleetState], bool]:
    def check(state: FleetState) -> bool:
        return all(settled(state, tid) for tid in task_ids)

    return check


def assert_replay_matches(store: EventStore, live: FleetState) -> None:
    """The state replayed from the log up to the live position equals the live state."""
    index = TaskIndex(store)

    def comparable(state: FleetState) -> FleetState:  # `Fleet.state()` has finished tasks read back
        return state if live.finished else index.full_state(state)

    replayed, _ = replay(store, until=live.position, use_snapshot=False)
    replayed = comparable(replayed)
    assert replayed.same_as(live), diff_states(replayed, live)
    from_snapshot, _ = replay(store, until=live.position)
    from_snapshot = comparable(from_snapshot)
    assert from_snapshot.same_as(live), diff_states(from_snapshot, live)


def events_of(store: EventStore, kind: type[t.Event], task_id: str | None = None) -> list[Any]:
    return [
        e.event
        for e in store.read_range()
        if isinstance(e.event, kind)
        and (task_id is None or getattr(e.event, "task_id", None) == task_id)
    ]


def diff_states(a: FleetState, b: FleetState) -> list[str]:
    """Paths where two states differ (for assertion messages)."""
    import msgspec

    out: list[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in list(dict.fromkeys([*x, *y])):
                walk(x.get(k), y.get(k), f"{path}.{k}")
            if list(x) != list(y) and set(x) == set(y):
                out.append(f"{path}: order {list(x)} != {list(y)}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                walk(p, q, f"{path}[{i}]")
        elif x != y:
            out.append(f"{path}: {x!r} != {y!r}")

    walk(msgspec.to_builtins(a, str_keys=True), msgspec.to_builtins(b, str_keys=True), "")
    return out
