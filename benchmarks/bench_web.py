"""The web dashboard, measured as a user runs it (`make bench`, or
`python -m benchmarks bench_web`).

A real `forge web --port 0` on its own embedded server, over a log of N finished tasks (four
events each; N = 25,000, 100,000 events; FORGE_BENCH_WEB_TASKS changes it). Figures:

* start: from the process's start to its printed address (the first replay of the log);
* the JSON of the fleet page, the task list with a text filter, the time slider's replay of
  the fleet at the log's middle moment (no snapshot: a full fold of half the log), and one
  task's page (its timeline read through the per-task index), p50;
* push: from an append to the server-sent event that carries it to an open page, p50 / p99.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from events import EventStore
from events import types as t
from forge.server import EmbeddedServer


def _log(store: EventStore, tasks: int) -> str:
    """Write the log; return the id of its middle entry."""
    now = time.time()
    middle = ""
    for first in range(0, tasks, 500):
        batch: list[t.Event] = []
        for i in range(first, min(tasks, first + 500)):
            task_id = f"task-{i:06d}"
            spec = t.TaskDefinition(command=["true"], name=f"bench {i}")
            batch += [
                t.TaskSubmitted(at=now, task_id=task_id, spec=spec),
                t.TaskAssigned(at=now, task_id=task_id, attempt=1, agent_id="a", epoch=1),
                t.TaskStarted(at=now, task_id=task_id, attempt=1, agent_id="a"),
                t.TaskCompleted(at=now, task_id=task_id, attempt=1, agent_id="a", exit_code=0),
            ]
        ids = store.append_batch(batch)
        if first <= tasks // 2 < first + 500:
            middle = ids[0]
    return middle


def _p50(fetch: object, n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fetch()  # type: ignore[operator]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    tasks = int(os.environ.get("FORGE_BENCH_WEB_TASKS", "25000"))
    home = Path(tempfile.mkdtemp(prefix="fbw", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    store = EventStore(client, "forge")
    middle = _log(store, tasks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    env |= {"FORGE_HOME": str(home), "FORGE_LOGGING_LEVEL": "warning"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge", "web", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        found = re.search(r"127\.0\.0\.1:(\d+)/\?token=(\S+)", proc.stdout.readline())
        assert found is not None, "forge web printed no address"
        start_ms = (time.perf_counter() - started) * 1000
        port, token = int(found[1]), found[2]
        headers = {"X-Forge-Token": token}

        def get(path: str) -> bytes:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", path, headers=headers)
            body = conn.getresponse().read()
            conn.close()
            return body

        get("/api/fleet")  # the live state is ready once this answers
        fleet = _p50(lambda: get("/api/fleet"), 10)
        listed = _p50(lambda: get("/api/tasks?q=bench%2012"), 10)
        moment = _p50(lambda: get(f"/api/at?until={middle}"), 3)
        one = _p50(lambda: get("/api/task/task-000012"), 3)
        push = _push(port, headers, store)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"   log: {tasks} tasks, {tasks * 4} events")
    print(f"   start (replay + listen): {start_ms:.0f} ms")
    print(f"   /api/fleet p50: {fleet:.1f} ms   /api/tasks?q= p50: {listed:.1f} ms")
    print(f"   time slider at the middle (full fold of half the log) p50: {moment:.0f} ms")
    print(f"   one task's page (its timeline, through the task index) p50: {one:.0f} ms")
    print(f"   push, append -> event on an open page: p50 {push[0]:.2f} ms, p99 {push[1]:.2f} ms")


def _push(port: int, headers: dict[str, str], store: EventStore) -> tuple[float, float]:
    """Append 100 events one at a time; time each until its SSE line arrives."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/stream", headers=headers)
    response = conn.getresponse()
    arrived: dict[str, float] = {}
    seen = threading.Condition()

    def read() -> None:
        try:
            for raw in response:
                line = raw.decode()
                found = re.search(r'"position": "([0-9-]+)"', line)
                if line.startswith("data:") and found:
                    with seen:
                        arrived[found[1]] = time.perf_counter()
                        seen.notify_all()
        except (OSError, AttributeError, ValueError):  # the stream was closed: the end
            return

    threading.Thread(target=read, daemon=True).start()
    samples = []
    for i in range(100):
        sent = time.perf_counter()
        entry = store.append(t.AgentSpawned(at=time.time(), agent_id=f"bench-{i}"))
        with seen:
            seen.wait_for(lambda e=entry: e in arrived, timeout=10)  # type: ignore[misc]
        samples.append((arrived[entry] - sent) * 1000)
    conn.close()
    samples.sort()
    return statistics.median(samples), samples[98]


if __name__ == "__main__":
    main()
