"""Event log figures, all on one embedded server in one run (`make bench`).

* batched append (EventStore.append_batch, Lua + index) vs raw redis-py pipelined XADD of the
  same encoded payloads;
* single-append latency p50/p99;
* replay throughput of a 1,000,000-event log (and a naive XRANGE + decode + fold loop);
* startup (replay) time with and without a snapshot for logs of 10k, 100k and 1M events.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from events import (
    EventStore,
    FleetState,
    SnapshotStore,
    TaskAssigned,
    TaskCompleted,
    TaskDefinition,
    TaskProgress,
    TaskStarted,
    TaskSubmitted,
    TaskUsage,
    apply,
    replay,
)
from events.codec import decode_entry, encode_entry
from events.types import Event
from forge.server import EmbeddedServer

PROGRESS_PER_TASK = 20  # a Claude Code attempt streams many progress/usage notices
BATCH = 1000


def task_events(i: int) -> Iterator[Event]:
    """A realistic life of one task: ~26 events."""
    tid = f"task-{i:07d}"
    at = 1_700_000_000.0 + i
    spec = TaskDefinition(prompt="fix the flaky test", priority=1 + i % 5, tags=["py"])
    yield TaskSubmitted(at=at, task_id=tid, spec=spec)
    yield TaskAssigned(at=at, task_id=tid, attempt=1, agent_id=f"agent-{i % 16}", epoch=1)
    yield TaskStarted(at=at, task_id=tid, attempt=1, agent_id=f"agent-{i % 16}", pid=1000 + i)
    for k in range(PROGRESS_PER_TASK):
        yield TaskProgress(at=at, task_id=tid, attempt=1, summary=f"step {k}: editing files")
        if k % 8 == 7:
            yield TaskUsage(at=at, task_id=tid, attempt=1, input_tokens=100 * k, cost_usd=0.001 * k)
    yield TaskCompleted(at=at, task_id=tid, attempt=1, agent_id=f"agent-{i % 16}", exit_code=0)


def events(n: int) -> Iterator[Event]:
    i = 0
    count = 0
    while True:
        for e in task_events(i):
            if count == n:
                return
            yield e
            count += 1
        i += 1


def fill(client: redis.Redis, store: EventStore, n: int) -> None:
    """Write n events quickly (pre-encoded, pipelined raw XADD; the index is not needed)."""
    pipe = client.pipeline(transaction=False)
    for k, e in enumerate(events(n), 1):
        pipe.xadd(store.keys.log, encode_entry(e))  # type: ignore[arg-type]
        if k % 5000 == 0:
            pipe.execute()
    pipe.execute()


def bench_append(client: redis.Redis) -> list[tuple[str, str]]:
    n = 100_000
    evs = list(events(n))
    entries = [encode_entry(e) for e in evs]
    raw_key = "bench:{raw}:log"
    best_raw = best_store = 0.0
    for _ in range(2):
        client.delete(raw_key)
        t0 = time.perf_counter()
        for s in range(0, n, BATCH):
            pipe = client.pipeline(transaction=False)
            for fields in entries[s : s + BATCH]:
                pipe.xadd(raw_key, fields)  # type: ignore[arg-type]
            pipe.execute()
        best_raw = max(best_raw, n / (time.perf_counter() - t0))
        client.flushall()
        store = EventStore(client, "append")
        t0 = time.perf_counter()
        for s in range(0, n, BATCH):
            store.append_batch(evs[s : s + BATCH])
        best_store = max(best_store, n / (time.perf_counter() - t0))
    client.flushall()
    store = EventStore(client, "latency")
    lat = []
    for e in events(3000):
        t0 = time.perf_counter()
        store.append(e)
        lat.append((time.perf_counter() - t0) * 1e6)
    lat.sort()
    client.flushall()
    return [
        ("raw pipelined XADD (batches of 1000)", f"{best_raw:,.0f} events/s"),
        ("EventStore.append_batch (Lua + index)", f"{best_store:,.0f} events/s"),
        ("  ratio store / raw (target >= 0.8)", f"{best_store / best_raw:.2f}"),
        ("single append latency p50", f"{lat[len(lat) // 2]:.0f} us"),
        ("single append latency p99", f"{lat[int(len(lat) * 0.99)]:.0f} us"),
    ]


def timed_replay(store: EventStore, use_snapshot: bool) -> tuple[float, FleetState]:
    gc.collect()
    t0 = time.perf_counter()
    state, _ = replay(store, use_snapshot=use_snapshot)
    return time.perf_counter() - t0, state


def bench_replay(client: redis.Redis) -> list[tuple[str, str]]:
    rows = []
    for n in (10_000, 100_000, 1_000_000):
        store = EventStore(client, f"r{n}")
        fill(client, store, n - 1000)
        full_s, state = timed_replay(store, use_snapshot=False)
        SnapshotStore(store).save(state)
        fill_tail = list(events(n))[-1000:] if n <= 100_000 else None
        if fill_tail is None:
            pipe = client.pipeline(transaction=False)
            for e in list(_tail(n)):
                pipe.xadd(store.keys.log, encode_entry(e))  # type: ignore[arg-type]
            pipe.execute()
        else:
            pipe = client.pipeline(transaction=False)
            for e in fill_tail:
                pipe.xadd(store.keys.log, encode_entry(e))  # type: ignore[arg-type]
            pipe.execute()
        full_s, state = timed_replay(store, use_snapshot=False)
        snap_s, snap_state = timed_replay(store, use_snapshot=True)
        assert snap_state.same_as(state), "snapshot + tail must equal a full replay"
        if n == 1_000_000:
            rows.append(("replay 1M events (no snapshot)", f"{n / full_s:,.0f} events/s"))
            rows.append(("  naive XRANGE+decode+apply loop", f"{naive_rate(store):,.0f} events/s"))
        rows.append(
            (
                f"startup, {n:>9,} events: full / snapshot+1k tail",
                f"{full_s * 1000:8.1f} ms / {snap_s * 1000:6.1f} ms",
            )
        )
        rows.append((f"  tasks in state at {n:,} events", f"{len(state.tasks):,}"))
        client.delete(store.keys.log)
    return rows


def _tail(n: int) -> Iterator[Event]:
    for k, e in enumerate(events(n)):
        if k >= n - 1000:
            yield e


def naive_rate(store: EventStore, n: int = 200_000) -> float:
    t0 = time.perf_counter()
    state = FleetState()
    start = "-"
    done = 0
    while done < n:
        raw = store.client.xrange(store.keys.log, start, "+", count=1000)
        if not raw:
            break
        for _id, fields in raw:
            apply(state, decode_entry(fields))
        done += len(raw)
        start = "(" + raw[-1][0].decode()
    return done / (time.perf_counter() - t0)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fgb", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    try:
        client = server.client(timeout=60)
        client.flushall()
        rows = bench_append(client) + bench_replay(client)
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        client.flushall()
        client.close()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
