"""The tail reader hands over what others appended, never the orchestrator's own appends, and
reads one entry a wake-up while the log grows only by those (actors.tail); in a fleet it waits
for an append under way rather than take the entries coming back with it for news."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from actors import tail as tail_module
from actors.fleet import Fleet
from actors.messages import LogAdvanced
from actors.tail import LogTail
from events import types as t
from events.store import EventStore
from forge.runtimes import NoopRuntime
from tests.actors.helpers import config


class _Recording(EventStore):
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        super().__init__(client, namespace)
        self.counts: list[int] = []

    def read_raw(
        self, after: str, count: int, block_ms: int | None = None
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        self.counts.append(count)
        return super().read_raw(after, count, block_ms)


class _Target:
    def __init__(self) -> None:
        self.told: list[LogAdvanced] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def _until(condition: Any) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "not within 10 s"
        time.sleep(0.01)


def _event(n: int) -> t.Event:
    return t.AgentIdle(at=1.0 + n, agent_id=f"a{n}")


def test_own_appends_are_skipped_with_one_entry_reads_and_others_are_handed_over(
    redis_client: redis.Redis,
) -> None:
    store = _Recording(redis_client, "tail-own")
    target = _Target()
    applied = ["0-0"]
    gate = threading.Event()
    gate.set()

    def position() -> str:
        gate.wait(10)  # (held while the test appends "its own" entries and moves the position)
        return applied[0]

    # (a read blocks long enough that the first one is still waiting when the test appends)
    tail = LogTail(store, target, "0-0", block_ms=2000, applied=position)
    tail.start()
    try:
        _until(lambda: store.counts)  # reading from the start of the log
        gate.clear()
        own = store.append_batch([_event(n) for n in range(3)])
        applied[0] = own[-1]  # the orchestrator applied its own appends with the append
        gate.set()
        _until(lambda: len(store.counts) >= 2)
        assert target.told == []
        assert store.counts[:2] == [10_000, 1]  # the read that found only its own: one next
        others = store.append_batch([_event(n) for n in range(3, 5)])
        _until(lambda: sum(len(m.entries) for m in target.told) == 2)
        handed = [entry_id for m in target.told for entry_id, _ in m.entries]
        assert handed == others
        assert target.told[0].after == own[-1]
        assert store.counts[-1] == 10_000  # others append: it reads all there is
        assert [e.agent_id for m in target.told for _, e in m.entries] == ["a3", "a4"]
    finally:
        tail.stop()


class _SlowReplies(EventStore):
    """The reply to each append arrives 50 ms after the server has appended: the tail reader
    has seen the entries by then."""

    def append_groups(self, *args: Any, **kwargs: Any) -> Any:
        appended = super().append_groups(*args, **kwargs)
        time.sleep(0.05)
        return appended


def test_the_tail_waits_for_an_append_under_way_instead_of_taking_its_entries_for_news(
    redis_client: redis.Redis, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _SlowReplies(redis_client, "tail-under-way")
    spec = t.TaskDefinition(runtime="noop")
    store.append_batch([t.TaskSubmitted(at=1.0, task_id=f"t{i}", spec=spec) for i in range(5)])
    decoded: list[bytes] = []
    real = tail_module.decode_entry

    def counting(fields: dict[bytes, bytes]) -> t.Event:
        decoded.append(fields[b"d"])
        return real(fields)

    monkeypatch.setattr(tail_module, "decode_entry", counting)
    fleet = Fleet(store, {"noop": NoopRuntime()}, config(tmp_path, max_agents=2)).start()
    try:
        _until(lambda: fleet.counts().get("completed", 0) == 5)
    finally:
        fleet.stop(grace=0.0, timeout=20)
    # every entry after the start is the fleet's own, back with its append: none is news
    assert decoded == []
