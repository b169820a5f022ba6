"""Replay, snapshots, quarantine, concurrent writers and consumer groups on the real server."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest
import redis
import structlog

from events import (
    EventStore,
    FleetState,
    GroupConsumer,
    SnapshotStore,
    TaskDefinition,
    TaskSubmitted,
    apply_all,
    replay,
)
from events.task_index import TaskIndex
from forge.server import EmbeddedServer
from tests.events import workers

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture
def store(redis_client: redis.Redis) -> EventStore:
    return EventStore(redis_client, "log")


def submits(n: int, start: int = 0) -> list[TaskSubmitted]:
    spec = TaskDefinition(command=["true"])
    return [TaskSubmitted(at=float(i), task_id=f"t{i}", spec=spec) for i in range(start, start + n)]


def test_replay_until_a_position(store: EventStore) -> None:
    ids = store.append_batch(submits(10))
    state, report = replay(store, until=ids[3], use_snapshot=False)
    assert set(state.tasks) == {"t0", "t1", "t2", "t3"}
    assert report.position == ids[3]


def test_replay_pages_cover_the_whole_log(store: EventStore) -> None:
    store.append_batch(submits(25))
    state, report = replay(store, use_snapshot=False, page_size=7)
    assert len(state.tasks) == 25
    assert report.events_applied == 25


def test_snapshot_plus_tail_equals_full_replay(store: EventStore) -> None:
    snaps = SnapshotStore(store, keep=2)
    for k in range(4):
        store.append_batch(submits(5, start=5 * k))
        state, _ = replay(store, snapshots=snaps)
        snaps.save(state)
    assert len(snaps.positions()) == 2
    store.append_batch(submits(3, start=100))
    full, _ = replay(store, use_snapshot=False)
    fast, report = replay(store, snapshots=snaps)
    assert report.snapshot_position == snaps.positions()[-1]
    assert report.events_applied == 3
    assert fast.same_as(full)
    assert store.trim_before_oldest_snapshot() == 14  # everything before the oldest kept one
    assert replay(store, snapshots=snaps)[0].same_as(full)


def test_unusable_snapshot_falls_back_to_full_replay(store: EventStore) -> None:
    snaps = SnapshotStore(store)
    store.append_batch(submits(5))
    state, _ = replay(store)
    snaps.save(state)
    key = store.keys.snapshot(state.position)
    raw = bytearray(store.client.get(key))  # type: ignore[arg-type]
    raw[-3] ^= 0xFF  # flip bits in the body: the checksum no longer matches
    store.client.set(key, bytes(raw))
    with structlog.testing.capture_logs() as logs:
        again, report = replay(store, snapshots=snaps)
    assert report.snapshot_position is None
    assert again.same_as(state)
    assert any(log["reason"] == "checksum mismatch" for log in logs)


def test_corrupt_entries_are_quarantined_not_fatal(store: EventStore) -> None:
    good = submits(4)
    store.append(good[0])
    log = store.keys.log
    store.client.xadd(log, {"d": b"\xc1\xc1", "v": "1"})
    store.client.xadd(log, {"d": msgspec.msgpack.encode({"type": "nope", "at": 1.0})})
    store.append(good[1])
    store.client.xadd(log, {"d": msgspec.msgpack.encode({"type": "task.queued"}), "v": "1"})
    store.client.xadd(log, {"junk": "yes"})
    store.append_batch(good[2:])
    state, report = replay(store, use_snapshot=False)
    expected = apply_all(FleetState(), good)
    expected.position = state.position
    assert state.same_as(expected)
    assert set(state.tasks) == {"t0", "t1", "t2", "t3"}
    assert len(report.quarantined) == 4
    assert [q.stream_id for q in store.quarantined()] == [q.stream_id for q in report.quarantined]
    assert [e.event for e in store.read_range()] == good


def test_older_schema_fixture_replays_to_the_recorded_state(store: EventStore) -> None:
    entries = msgspec.msgpack.decode((FIXTURES / "events_v1.msgpack").read_bytes())
    for fields in entries:
        store.client.xadd(store.keys.log, fields)
    state, report = replay(store, use_snapshot=False)
    assert not report.quarantined
    expected = msgspec.json.decode((FIXTURES / "events_v1_expected.json").read_bytes())
    index = TaskIndex(store)  # finished tasks left the hot state: read them through the index
    tasks = {
        tid: state.tasks.get(tid) or index.task(tid) for tid in [*state.tasks, *state.finished]
    }
    summary = {
        tid: [t.state, t.attempt, t.input_tokens, round(t.cost_usd, 6)]
        for tid, t in tasks.items()
        if t is not None
    }
    assert summary == expected["tasks"]
    assert set(state.finished) == {"old-0", "old-1"}
    assert round(state.total_cost_usd, 6) == expected["total_cost_usd"]


def test_concurrent_claims_in_threads_have_one_winner(store: EventStore) -> None:
    tasks = [f"t{i}" for i in range(50)]
    store.append_batch(submits(50))
    socket = store.client.connection_pool.connection_kwargs["path"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda w: workers.claim_all(socket, "log", w, tasks), range(8)))
    won = [t for r in results for t in r]
    assert sorted(won) == sorted(tasks)
    assert replay(store, use_snapshot=False)[0].anomalies == 0


@pytest.mark.slow
def test_concurrent_claims_in_processes_have_one_winner(store: EventStore) -> None:
    tasks = [f"t{i}" for i in range(40)]
    store.append_batch(submits(40))
    socket = store.client.connection_pool.connection_kwargs["path"]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(workers.claim_all, [(socket, "log", w, tasks) for w in range(4)])
    won = [t for r in results for t in r]
    assert sorted(won) == sorted(tasks)


def test_consumer_killed_midway_loses_nothing(store: EventStore) -> None:
    ids = store.append_batch(submits(15))
    socket = store.client.connection_pool.connection_kwargs["path"]
    GroupConsumer(store, "g", "setup")  # the group exists before the child reads
    child = multiprocessing.get_context("spawn").Process(
        target=workers.consume_then_die, args=(socket, "log", 3)
    )
    child.start()
    child.join(30)
    assert child.exitcode == -9
    survivor = GroupConsumer(store, "g", "survivor", min_idle_ms=0, count=100)
    seen: list[str] = []
    while len(seen) < 12:
        batch = survivor.read(block_ms=100)
        assert batch, "entries went missing"
        seen += [d.id for d in batch]
        survivor.ack(*(d.id for d in batch))
    assert len(seen) == 12
    assert set(seen) == set(ids[3:])


def test_consumer_resumes_and_dead_letters_poison(store: EventStore) -> None:
    ids = store.append_batch(submits(3))
    consumer = GroupConsumer(store, "g", "c1", max_deliveries=2)
    handled: list[str] = []
    for _ in range(5):
        for delivery in consumer.read(block_ms=10):
            if delivery.id == ids[1]:  # a poison entry: the handler keeps failing
                consumer.redeliver_pending()
                continue
            handled.append(delivery.id)
            consumer.ack(delivery.id)
    assert handled == [ids[0], ids[2]]
    dead = consumer.dead_letters()
    assert [f[b"origin"].decode() for _, f in dead] == [ids[1]]
    # a restarted consumer of the same name has nothing left pending, and resumes after the end
    store.append_batch(submits(1, start=50))
    again = GroupConsumer(store, "g", "c1")
    assert [d.event.task_id for d in again.read(block_ms=10)] == ["t50"]  # type: ignore[attr-defined]


def test_server_fixture_is_real(embedded_server: EmbeddedServer) -> None:
    assert embedded_server.client().ping()
