"""Finished tasks leave the hot state; the per-task index reads them back; reopening restores
them; snapshots and the hot digest do not grow with finished tasks."""

from __future__ import annotations

import time
from collections import deque

import msgspec
import pytest
import redis

from events import (
    DaemonStarted,
    EventStore,
    SnapshotStore,
    TaskAssigned,
    TaskCompleted,
    TaskConflict,
    TaskContinued,
    TaskDeadLettered,
    TaskDefinition,
    TaskFailed,
    TaskQueued,
    TaskStarted,
    TaskSubmitted,
    TaskUsage,
    replay,
    task_index,
    task_indexer,
)
from events.projection import apply
from events.state import FleetState, PackedMap, enc_hook
from events.task_index import TaskIndex, manual_retry


@pytest.fixture
def store(redis_client: redis.Redis) -> EventStore:
    return EventStore(redis_client, "evict")


def submit(task_id: str, after: list[str] | None = None) -> TaskSubmitted:
    spec = TaskDefinition(command=["true"], after=after or [])
    return TaskSubmitted(at=1.0, task_id=task_id, spec=spec)


def run_to_end(store: EventStore, task_id: str, epoch: int = 1) -> None:
    store.claim(
        task_id, TaskAssigned(at=2.0, task_id=task_id, attempt=1, agent_id="agent-7x", epoch=epoch)
    )
    store.append(TaskStarted(at=3.0, task_id=task_id, attempt=1, agent_id="agent-7x", pid=7))
    store.append(TaskUsage(at=4.0, task_id=task_id, attempt=1, input_tokens=5, cost_usd=0.25))
    store.complete(
        task_id,
        1,
        epoch,
        TaskCompleted(at=5.0, task_id=task_id, attempt=1, agent_id="agent-7x", result="done"),
    )


def test_finished_task_leaves_the_hot_state_and_reads_back(store: EventStore) -> None:
    store.append_batch([submit("a"), submit("b", after=["a"])])
    run_to_end(store, "a")
    state, _ = replay(store, use_snapshot=False)
    assert "a" not in state.tasks
    assert state.finished == {"a": "completed|1|1"}
    assert state.tasks["b"].state == "pending"
    assert state.dependants == {"a": ["b"]}  # b still waits on a: the orchestrator queues it
    store.append(TaskQueued(at=6.0, task_id="b", reason="dependencies_met"))
    state, _ = replay(store, use_snapshot=False)
    assert state.tasks["b"].state == "queued"
    assert state.dependants == {}  # nothing waits any more: no trace of a is left but `finished`
    # a task that names a finished dependency is queued at once
    store.append(submit("c", after=["a"]))
    state, _ = replay(store, use_snapshot=False)
    assert state.tasks["c"].state == "queued"
    assert state.dependants == {}

    index = TaskIndex(store)
    a = index.task("a")
    assert a is not None
    assert (a.state, a.attempt, a.result, a.cost_usd, a.input_tokens) == (
        "completed",
        1,
        "done",
        0.25,
        5,
    )
    assert [r.outcome for r in a.history] == ["completed"]
    assert [type(e.event).__name__ for e in index.entries("a")] == [
        "TaskSubmitted",
        "TaskAssigned",
        "TaskStarted",
        "TaskUsage",
        "TaskCompleted",
    ]
    assert [x.task_id for x in index.finished()] == ["a"]
    assert index.task("nobody") is None
    ids = index.entry_ids("a")
    assert index.rebuild() == store.length()
    assert index.entry_ids("a") == ids
    assert [x.task_id for x in index.finished()] == ["a"]


def test_snapshot_and_digest_hold_no_finished_task(store: EventStore) -> None:
    snapshots = SnapshotStore(store)
    store.append(submit("live"))
    for i in range(30):
        store.append(submit(f"t{i}"))
        run_to_end(store, f"t{i}")
    state, _ = replay(store, use_snapshot=False)
    assert list(state.tasks) == ["live"]
    assert len(state.finished) == 30
    snapshots.save(state)
    body = msgspec.msgpack.encode(state, enc_hook=enc_hook)
    assert b"agent-7x" not in body  # no finished task's attempts, results or definitions
    assert len(body) < 2_000
    tail_task = submit("late")
    store.append(tail_task)
    restarted, report = replay(store, snapshots=snapshots)
    full, _ = replay(store, use_snapshot=False)
    assert report.snapshot_position is not None
    assert restarted.same_as(full)
    # the hot digest ignores the finished map, and only it
    other = FleetState()
    other.finished = PackedMap({"x": "completed|1|1"})
    assert other.hot_digest() == FleetState().hot_digest()
    assert full.hot_digest() == restarted.hot_digest()
    full.tasks["late"].definition = TaskDefinition(command=["false"])
    assert full.hot_digest() != restarted.hot_digest()


def test_reopening_restores_a_finished_task(store: EventStore) -> None:
    store.append(submit("d"))
    store.claim("d", TaskAssigned(at=2.0, task_id="d", attempt=1, agent_id="agent-7x", epoch=3))
    store.append(TaskFailed(at=3.0, task_id="d", attempt=1, failure="crash", transient=True))
    store.append(TaskDeadLettered(at=3.0, task_id="d", attempts=1, reason="gave up"))
    state, _ = replay(store, use_snapshot=False)
    assert state.finished == {"d": "dead_lettered|1|3"}

    # without the task's state the index refuses a reopening, and the projection ignores it
    with pytest.raises(TaskConflict):
        store.append_if("d", {"state": "dead_lettered"}, TaskQueued(at=4.0, task_id="d"))
    store.append(TaskQueued(at=4.0, task_id="d", reason="manual_retry"))
    state, _ = replay(store, use_snapshot=False)
    assert state.finished == {"d": "dead_lettered|1|3"}
    assert state.anomalies == 1
    assert store.task_index("d") == ("dead_lettered", 1, 3)

    # `forge task retry` (the orchestrator) brings it back with its history
    store.append(manual_retry(store, state, "d", at=5.0))
    state, _ = replay(store, use_snapshot=False)
    assert "d" not in state.finished
    d = state.tasks["d"]
    assert (d.state, d.attempt, d.last_reason) == ("queued", 1, "gave up")
    assert [r.attempt for r in d.history] == [1]
    assert list(state.queued()) == ["d"]
    assert store.task_index("d") == ("queued", 1, 3)
    assert state.counts() == {"queued": 1}

    # `forge task continue` of a completed (evicted) task does the same
    store.append(submit("e"))
    run_to_end(store, "e", epoch=3)
    state, _ = replay(store, use_snapshot=False)
    e = TaskIndex(store).task("e")
    assert e is not None
    restore = msgspec.to_builtins(e)
    store.append_if(
        "e",
        {"state": "completed", "attempt": 1},
        TaskContinued(at=9.0, task_id="e", prompt="more", after_attempt=1, restore=restore),
    )
    state, _ = replay(store, use_snapshot=False)
    assert state.tasks["e"].state == "queued"
    assert state.tasks["e"].follow_up == "more"
    assert state.tasks["e"].result == "done"
    assert [x.task_id for x in TaskIndex(store).finished()] == []  # no longer finished


@pytest.mark.parametrize("most_open", [10_000, 1])
def test_a_long_lived_index_summarises_from_what_it_kept_as_a_rebuild_does(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, most_open: int
) -> None:
    """The daemon's index keeps the events of the open tasks whose submission it read (up to a
    bound: beyond it, tasks are read back) and folds their summaries from those; updated after
    every append (tasks end across its pages, one is retried after it ended, one was submitted
    before the index started), its summaries are a rebuild's, which reads every task's events
    back."""
    monkeypatch.setattr(task_index, "_MOST_OPEN", most_open)
    store.append(submit("before"))
    live = TaskIndex(store)
    steps = [
        lambda: store.append_batch([submit("f"), submit("g")]),
        lambda: run_to_end(store, "f"),
        lambda: run_to_end(store, "before"),
        lambda: store.claim(
            "g", TaskAssigned(at=2.0, task_id="g", attempt=1, agent_id="agent-7x", epoch=1)
        ),
        lambda: store.append(
            TaskFailed(at=3.0, task_id="g", attempt=1, failure="crash", transient=True)
        ),
        lambda: store.append(TaskDeadLettered(at=3.0, task_id="g", attempts=1, reason="gave up")),
        lambda: store.append(manual_retry(store, replay(store, use_snapshot=False)[0], "g", 5.0)),
        lambda: store.append(TaskDeadLettered(at=6.0, task_id="g", attempts=1, reason="again")),
    ]
    for step in steps:
        step()
        live.update()
    kept = {x.task_id: msgspec.msgpack.encode(x) for x in live.finished()}
    assert set(kept) == {"f", "g", "before"}
    assert live._open == {}  # nothing kept once its task has ended
    fresh = TaskIndex(store)
    fresh.rebuild()
    assert kept == {x.task_id: msgspec.msgpack.encode(x) for x in fresh.finished()}
    g = fresh.task("g")
    assert g is not None
    assert (g.state, g.last_reason) == ("dead_lettered", "again")


def test_entries_fed_by_the_daemon_are_indexed_and_a_gap_in_them_is_read_from_the_log(
    store: EventStore,
) -> None:
    """The daemon feeds its indexer each entry it applies, with the id before it; entries that
    follow on are indexed as fed, a gap (entries applied before the feeding began, or dropped)
    is filled from the log, and what was indexed already is skipped: the result is a rebuild's;
    what lies beyond the last entry fed waits for the feed (or a reader, who indexes to the end)."""
    store.append_batch([submit("h"), submit("i")])
    fed: deque[task_index.Fed] = deque()
    before = "0-0"
    for entry in store.read_range():
        fed.append((before, entry.id, entry.event, None, False))
        before = entry.id
    run_to_end(store, "h")
    run_to_end(store, "i")
    tail = store.read_range("(" + before)
    fed.append(
        (tail[-2].id, tail[-1].id, tail[-1].event, None, False)
    )  # a gap before it; read past it
    live = TaskIndex(store)
    assert live.update(fed) == store.length()
    assert not fed
    assert live.update(deque()) == 0
    store.append(DaemonStarted(at=6.0, node_id="node-1", epoch=1, pid=7))
    assert live.update(deque()) == 0  # not fed yet: left for the feed (or a reader)
    assert live.update() == 1
    summaries = {x.task_id: msgspec.msgpack.encode(x) for x in live.finished()}
    ids = {task_id: live.entry_ids(task_id) for task_id in ("h", "i")}
    fresh = TaskIndex(store)
    fresh.rebuild()
    assert summaries == {x.task_id: msgspec.msgpack.encode(x) for x in fresh.finished()}
    assert ids == {task_id: fresh.entry_ids(task_id) for task_id in ("h", "i")}
    assert set(summaries) == {"h", "i"}


@pytest.mark.parametrize("fed", [True, False])
def test_each_entry_is_indexed_in_its_own_tasks_set_across_script_calls_and_pages(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, fed: bool
) -> None:
    """Several tasks' entries, interleaved with one of no task, fed to the indexer or read from
    the log, in runs that take several script calls and pages: each task's set holds exactly
    its entries, the position is the last entry, and the finished tasks are summarised."""
    monkeypatch.setattr(task_index, "_ENTRIES_PER_CALL", 4)
    monkeypatch.setattr(task_index, "_PAGE", 7)
    tasks = ["m", "n", "o", "p"]
    store.append_batch([submit(tid) for tid in tasks])
    store.append(DaemonStarted(at=1.0, node_id="node-1", epoch=1, pid=7))
    for tid in tasks[:3]:
        run_to_end(store, tid)
    entries = store.read_range()
    feed: deque[task_index.Fed] = deque()
    before = "0-0"
    for entry in entries if fed else ():
        feed.append((before, entry.id, entry.event, None, False))
        before = entry.id
    live = TaskIndex(store)
    assert live.update(feed if fed else None) == len(entries)
    assert live.position() == entries[-1].id
    for tid in tasks:
        mine = [e.id for e in entries if getattr(e.event, "task_id", None) == tid]
        assert live.entry_ids(tid) == mine
    assert live.check(replay(store, use_snapshot=False)[0]) == []
    assert sorted(x.task_id for x in live.finished()) == ["m", "n", "o"]


def test_a_task_the_index_ends_and_its_events_do_not_is_summarised_at_the_end_of_the_log(
    store: EventStore,
) -> None:
    """The derived append index says a task ended while its events (kept by the indexer) do
    not end it — the index was written by someone else: once the indexer reaches the end of the
    log, what the events make is the summary, as a read-back's would be."""
    store.append(submit("j"))
    (entry,) = store.read_range()
    store.client.hset(store.keys.index, "j", "completed|1|1")
    live = TaskIndex(store)
    assert live.update(deque([("0-0", entry.id, entry.event, None, False)])) == 1
    summaries = [msgspec.msgpack.encode(x) for x in live.finished()]
    assert [(x.task_id, x.state) for x in live.finished()] == [("j", "queued")]
    fresh = TaskIndex(store)
    fresh.rebuild()
    assert summaries == [msgspec.msgpack.encode(x) for x in fresh.finished()]


def test_what_is_fed_to_an_indexer_that_cannot_keep_up_is_bounded(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An indexer that is not indexing (the log stalled under it, or it fell behind) holds at
    most `_MOST_FED` fed entries; the rest are dropped, and the gap is read from the log once it
    can: nothing is lost, as the log has it all."""
    indexer = task_indexer.TaskIndexer(TaskIndex(store))
    monkeypatch.setattr(indexer, "poke", lambda: None)  # it never runs
    event = submit("k")
    for i in range(task_indexer._MOST_FED + 100):
        indexer.feed(f"{i}-0", f"{i + 1}-0", event, None, False)
    assert len(indexer._fed) == task_indexer._MOST_FED


def _fed_as_the_ledger_feeds(store: EventStore) -> list[task_index.Fed]:
    """The log's entries, each with the task it ended (its final state), as `Ledger` feeds."""
    out: list[task_index.Fed] = []
    before, state = "0-0", FleetState()
    for entry in store.read_range():
        task = state.tasks.get(getattr(entry.event, "task_id", ""))
        apply(state, entry.event)
        ended = task if task is not None and task.task_id not in state.tasks else None
        out.append((before, entry.id, entry.event, ended, False))
        before = entry.id
    return out


def test_a_flush_indexes_what_was_fed_and_lets_it_go(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fed entries wait for a poke (a snapshot, thousands more, or `settle` seconds); `flush`
    has them indexed now, and the indexer holds none of them after: the daemon flushes before
    it gives a drained backlog's memory back."""
    store.append(submit("q"))
    run_to_end(store, "q")
    indexer = task_indexer.TaskIndexer(TaskIndex(store))
    fed = _fed_as_the_ledger_feeds(store)
    before = fed[-1][1]
    with monkeypatch.context() as held:
        held.setattr(indexer, "poke", lambda: None)
        for entry in fed:
            indexer.feed(*entry)
    assert store.client.hlen(store.keys.finished_summaries) == 0  # not indexed yet
    assert indexer.flush(timeout=10.0)
    assert not indexer._fed
    assert TaskIndex(store).position() == before
    summaries = store.client.hgetall(store.keys.finished_summaries)
    assert [k.decode() for k in summaries] == ["q"]

    def unreachable(fed: object = None) -> int:
        raise redis.ConnectionError("the server is gone")

    monkeypatch.setattr(indexer.index, "update", unreachable)
    indexer.feed(before, "9999999999999-0", submit("r"), None, False)
    assert not indexer.flush(timeout=0.2)  # it fails, and holds the entry for the next time
    assert len(indexer._fed) == 1


def test_what_was_fed_is_indexed_within_settle_seconds_without_a_poke(store: EventStore) -> None:
    """The last entries of a burst (fewer than wake the indexer, no snapshot after) are
    indexed by the indexer's own timer: an idle daemon writes the summaries of what finished."""
    store.append(submit("s"))
    run_to_end(store, "s")
    *first, last = _fed_as_the_ledger_feeds(store)
    indexer = task_indexer.TaskIndexer(TaskIndex(store), settle=0.05)
    for entry in first:  # (the first starts the indexer's thread)
        indexer.feed(*entry)
    deadline = time.monotonic() + 10
    while indexer._fed or indexer._busy:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert store.client.hlen(store.keys.finished_summaries) == 0
    indexer.feed(*last)  # the task's end: its thread runs, so nothing pokes it
    while not store.client.hlen(store.keys.finished_summaries):
        assert time.monotonic() < deadline, "not indexed without a poke"
        time.sleep(0.01)
    assert not indexer._fed
