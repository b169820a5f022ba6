"""Metrics figures (`python -m benchmarks bench_metrics`): what a scrape of `/metrics` costs.

* the first scrape, which folds the whole log (a daemon that starts on a long log);
* a scrape with nothing new, and one after 1,000 new events (a scrape every few seconds).

The log holds TASKS finished tasks of 4 events each (submitted, assigned, started, completed).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from events import types as t
from events.store import EventStore
from forge.metrics import LogMetrics
from forge.server import EmbeddedServer

TASKS = 25_000


def _task(i: int) -> list[t.Event]:
    task_id = f"t{i}"
    return [
        t.TaskSubmitted(at=1.0, task_id=task_id, spec=t.TaskDefinition(command=["true"])),
        t.TaskAssigned(at=2.0, task_id=task_id, attempt=1, agent_id="a", epoch=1),
        t.TaskStarted(at=3.0, task_id=task_id, attempt=1, agent_id="a"),
        t.TaskCompleted(at=4.0, task_id=task_id, attempt=1, agent_id="a", exit_code=0),
    ]


def _append(store: EventStore, first: int, count: int) -> None:
    for start in range(first, first + count, 500):
        store.append_batch(
            [e for i in range(start, min(start + 500, first + count)) for e in _task(i)]
        )


def _scrape(registry: CollectorRegistry) -> tuple[float, int]:
    started = time.perf_counter()
    body = generate_latest(registry)
    return time.perf_counter() - started, len(body)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fbm"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        store = EventStore(client, "bench")
        _append(store, 0, TASKS)
        metrics = LogMetrics(store, "bench")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        first, size = _scrape(registry)
        idle, _ = _scrape(registry)
        _append(store, TASKS, 250)
        after, _ = _scrape(registry)
        events = store.length()
        print(
            f"   first scrape, {events - 1000:,} events: {first:7.3f} s "
            f"({(events - 1000) / first:,.0f} events/s; {size:,} bytes of text)"
        )
        print(f"   scrape, nothing new:          {idle * 1000:7.1f} ms")
        print(f"   scrape, 1,000 new events:     {after * 1000:7.1f} ms")
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
