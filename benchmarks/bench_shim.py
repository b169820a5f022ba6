"""The shim's costs (`make bench`), each figure next to its target (issue 11, "cheap shell tasks"):

* start-to-exit of one shim running `true` (the C shim and the Python shim), measured from
  the spawn to the status file being written;
* shell `true` tasks/s with 8 agents through a real fleet with stock settings, under each shim;
* unique memory (USS) per shim with 100 `sleep` attempts running, under each shim.

Run alone: `.venv/bin/python -m benchmarks bench_shim`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import redis

from actors.fleet import Fleet
from actors.policy import OrchestratorConfig
from events import EventStore, TaskDefinition, TaskSubmitted
from forge.runtimes import ProcessRun, ShellRuntime, native_shim, shim_launch
from forge.server import EmbeddedServer

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
TASKS_PER_S_TARGET = 300.0
USS_TARGET = 1 << 20


@contextmanager
def using(command: list[str]) -> Iterator[None]:
    """Run every attempt started meanwhile under the shim `command`."""
    chosen = shim_launch.shim_command
    shim_launch.shim_command = lambda: list(command)
    try:
        yield
    finally:
        shim_launch.shim_command = chosen


def start_to_exit(command: list[str], home: Path, runs: int) -> float:
    """Median seconds from spawning the shim (running `true`) to its exit."""
    env = json.dumps(ENV).encode()
    times = []
    for i in range(runs):
        log = home / f"s{i}.log"
        argv = [*command, "--status", f"{log}.status.json", "--log", str(log), "--env-stdin"]
        started = time.perf_counter()
        subprocess.run([*argv, "--", "true"], input=env, check=True, env={})
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def fleet_throughput(client: redis.Redis, home: Path, tasks: int, agents: int) -> float:
    """Shell `true` tasks/s through a fleet with stock settings (every state change logged)."""
    store = EventStore(client, f"shim-{time.monotonic_ns()}")
    spec = TaskDefinition(runtime="shell", command=["true"])
    now = time.time()
    store.append_batch([TaskSubmitted(at=now, task_id=f"t{i}", spec=spec) for i in range(tasks)])
    config = OrchestratorConfig(
        node_id="bench", logs_dir=str(home / "logs"), max_agents=agents, base_env=ENV
    )
    fleet = Fleet(store, {"shell": ShellRuntime()}, config)
    started = time.perf_counter()
    fleet.start()
    deadline = time.monotonic() + 600
    while fleet.counts().get("completed", 0) < tasks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tasks} tasks did not complete in 600 s")
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    fleet.stop(grace=0, timeout=30)
    fleet.close()
    return tasks / elapsed


def uss_per_shim(home: Path, count: int) -> float:
    """Mean unique memory (bytes) of `count` shims, each running `sleep`."""
    runs = [
        ProcessRun.start(["sleep", "600"], log_path=str(home / f"m{i}.log"), sink=_drop, env=ENV)
        for i in range(count)
    ]
    try:
        for run in runs:  # every shim has spawned its command and settled
            while not run.resource_usage().processes:
                time.sleep(0.01)
        return statistics.mean(psutil.Process(run.pid).memory_full_info().uss for run in runs)
    finally:
        for run in runs:
            run.terminate(grace=0)
        for run in runs:
            run.wait(30)


def _drop(_notice: object) -> None:
    pass


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fbs", dir="/tmp"))
    shims = {"python": native_shim.python_command()}
    try:
        shims["c"] = [str(native_shim.build(home / "bin"))]
    except native_shim.NativeShimUnavailable as e:
        print(f"the C shim is unavailable here: {e}")
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        print(f"{'figure':<52}{'python':>10}{'c':>10}{'target':>10}")
        figures: dict[str, dict[str, str]] = {}
        for name, command in shims.items():
            (home / name).mkdir()
            with using(command):
                seconds = start_to_exit(command, home / name, 200 if name == "c" else 40)
                rate = fleet_throughput(client, home / name, 2000 if name == "c" else 300, 8)
                uss = uss_per_shim(home / name, 100)
            figures[name] = {
                "start": f"{seconds * 1000:.1f} ms",
                "rate": f"{rate:,.0f}",
                "uss": f"{uss / 2**20:.2f} MiB",
            }
        rows = (
            ("shim start-to-exit, `true` (median)", "start", "-"),
            (
                "shell `true` tasks/s, 8 agents, stock settings",
                "rate",
                f">= {TASKS_PER_S_TARGET:.0f}",
            ),
            (
                "USS per shim, 100 `sleep` attempts running",
                "uss",
                f"<= {USS_TARGET / 2**20:.0f} MiB",
            ),
        )
        for label, key, target in rows:
            cells = [figures.get(name, {}).get(key, "n/a") for name in ("python", "c")]
            print(f"{label:<52}{cells[0]:>10}{cells[1]:>10}{target:>10}")
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
