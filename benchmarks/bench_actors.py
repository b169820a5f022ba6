"""Whole-system figures (`make bench`): the actors, the log and a runtime together.

* tasks/s with the no-op runtime and with the shell runtime running `true`, at concurrency 1
  and 8, every state change appended to the log;
* submit-to-start latency p50/p99 with idle agents waiting;
* the daemon's resident memory with 50 agents and 10,000 queued tasks (in a child process, so
  that nothing else in this process is counted).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from actors.fleet import Fleet
from actors.policy import OrchestratorConfig
from actors.runtime import RuntimeAdapter
from benchmarks import floors
from events import EventStore, TaskDefinition, TaskStarted, TaskSubmitted
from forge.runtimes import NoopRuntime, ShellRuntime
from forge.server import EmbeddedServer

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _config(home: Path, agents: int) -> OrchestratorConfig:
    # a logs directory per run: task ids repeat from one run to the next
    return OrchestratorConfig(
        node_id="bench",
        logs_dir=tempfile.mkdtemp(prefix="logs-", dir=home),
        max_agents=agents,
        base_env=ENV,
        snapshot_every=100_000,
    )


def _wait_done(fleet: Fleet, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = fleet.counts().get("completed", 0)
        if done >= count:
            return
        time.sleep(0.02)
    raise TimeoutError(f"only {done} of {count} tasks completed in {timeout} s")


def throughput(
    client: redis.Redis,
    home: Path,
    runtime: RuntimeAdapter,
    command: list[str] | None,
    tasks: int,
    agents: int,
) -> tuple[float, int]:
    store = EventStore(client, f"tp-{runtime.name}-{agents}-{time.monotonic_ns()}")
    now = time.time()
    spec = TaskDefinition(runtime=runtime.name, command=command)
    store.append_batch([TaskSubmitted(at=now, task_id=f"t{i}", spec=spec) for i in range(tasks)])
    fleet = Fleet(store, {runtime.name: runtime}, _config(home, agents))
    started = time.perf_counter()
    fleet.start()
    _wait_done(fleet, tasks, timeout=600)
    elapsed = time.perf_counter() - started
    fleet.stop(grace=0, timeout=30)
    fleet.close()
    return tasks / elapsed, store.length()


def latency(client: redis.Redis, home: Path, samples: int = 300) -> tuple[float, float]:
    store = EventStore(client, f"lat-{time.monotonic_ns()}")
    fleet = Fleet(store, {"noop": NoopRuntime()}, _config(home, 8)).start()
    spec = TaskDefinition(runtime="noop")
    waits: list[float] = []
    for i in range(samples + 20):  # the first ones spawn the agents: not counted
        submitted = time.time()
        store.append(TaskSubmitted(at=submitted, task_id=f"l{i}", spec=spec))
        _wait_done(fleet, i + 1, timeout=30)
        if i >= 20:
            waits.append(submitted)
    fleet.stop(grace=0, timeout=30)
    fleet.close()
    starts = {
        e.event.task_id: e.event.at for e in store.read_range() if isinstance(e.event, TaskStarted)
    }
    gaps = sorted((starts[f"l{i + 20}"] - submitted) * 1000 for i, submitted in enumerate(waits))
    return statistics.median(gaps), gaps[int(len(gaps) * 0.99) - 1]


MEMORY_CHILD = """
import json, os, sys, time, psutil, redis
from pathlib import Path
from actors.fleet import Fleet
from actors.policy import OrchestratorConfig
from events import EventStore, TaskDefinition, TaskSubmitted
from forge.runtimes import ShellRuntime
client = redis.Redis(unix_socket_path=sys.argv[1])
home = Path(sys.argv[2])
store = EventStore(client, "mem")
now = time.time()
hold = TaskDefinition(command=["sleep", "60"], priority=1)
wait = TaskDefinition(command=["true"], priority=5)
store.append_batch([TaskSubmitted(at=now, task_id=f"h{i}", spec=hold) for i in range(50)])
for start in range(0, 10_000, 1000):
    store.append_batch([TaskSubmitted(at=now, task_id=f"q{i}", spec=wait)
                        for i in range(start, start + 1000)])
cfg = OrchestratorConfig(node_id="mem", logs_dir=str(home / "mlogs"), max_agents=50,
                         base_env={"PATH": os.environ["PATH"]})
fleet = Fleet(store, {"shell": ShellRuntime(kill_grace=0.2)}, cfg).start()
deadline = time.monotonic() + 120
while time.monotonic() < deadline and fleet.counts().get("running", 0) < 50:
    time.sleep(0.2)
# measured before this script looks at the state: a copy of it is this script's, not the daemon's
rss = psutil.Process().memory_info().rss
s = fleet.hot_state()
print("RESULT " + json.dumps({"rss": rss, "running": s.counts().get("running", 0),
                  "queued": s.queue_length(), "agents": len(s.agents)}))
sys.stdout.flush()
fleet.stop(grace=0, timeout=30)
fleet.close()
"""


def memory(server: EmbeddedServer, home: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(server.socket), str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, int] = json.loads(line.removeprefix("RESULT "))
    return result


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fba", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        print(f"{'workload':<40}{'tasks/s':>12}{'events':>10}")
        for name, runtime, command, tasks in (
            ("no-op", NoopRuntime(), None, 3000),
            ("shell `true`", ShellRuntime(), ["true"], 300),
        ):
            for agents in (1, 8):
                rate, events = throughput(client, home, runtime, command, tasks, agents)
                print(f"{name + f', concurrency {agents}':<40}{rate:>12,.0f}{events:>10,}")
        p50, p99 = latency(client, home)
        print(f"submit-to-start with idle agents: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for what, (w50, w99) in floors.idle_wakes().items():
            print(f"   this machine, an idle {what}: p50 {w50:.2f} ms, p99 {w99:.2f} ms")
        mem = memory(server, home)
        print(
            f"daemon RSS with {mem['agents']} agents ({mem['running']} running) and "
            f"{mem['queued']:,} queued tasks: {mem['rss'] / 2**20:.1f} MiB"
        )
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
