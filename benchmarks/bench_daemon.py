"""The stock daemon, measured as a user runs it (`make bench`).

A real `forge daemon start --foreground` on its own embedded server, with the default settings
but for eight agents (snapshots every 1,000 events, the heartbeat and its digest every 2 s),
no-op tasks submitted one by one from Python through the same `forge.submit` path the CLI uses.
Figures:

* tasks/s from the first submission to the last completion, with N tasks held in the log;
* submit-to-start latency p50/p99 during that run (from the events' own times);
* the daemon's resident memory once the run is over (after its next heartbeat, at which the
  memory a drained backlog took is given back: `forge.memory`);
* what a restart spends rebuilding the state over that log (snapshot + tail).

N is 20,000 and then 200,000, whose tasks/s is also printed as a share of the first's (the issue's
"within 10 %"); set FORGE_BENCH_HELD to another comma-separated list (e.g. 20000) to change it.
The largest N runs once more with 50 agents, as the issue states its memory target.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import floors
from events import EventStore, TaskStarted, TaskSubmitted
from events.replay import replay
from events.snapshot import SnapshotStore
from events.types import TaskCompleted
from forge.daemon_process import DaemonFiles
from forge.node import HEARTBEAT_INTERVAL
from forge.server import EmbeddedServer
from forge.settings import load_settings
from forge.submit import TaskRequest, plan, submit

TARGETS = {
    "tasks/s": 6000.0,
    "p99 ms": 5.0,
    "rss MiB": 100.0,
    "restart ms": 100.0,
}


def _daemon(home: Path, agents: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")} | {
        "FORGE_HOME": str(home),
        "FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS": str(agents),
        "FORGE_LOGGING_LEVEL": "warning",
    }
    log = open(home / "bench-daemon.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "forge", "daemon", "start", "--foreground"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    files = DaemonFiles(home)
    deadline = time.monotonic() + 60
    while (record := files.read()) is None or record.pid != proc.pid:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("the daemon did not start")
        time.sleep(0.05)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=120)


def run(held: int, agents: int = 8) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="fbd", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    store = EventStore(client, "forge")
    settings = load_settings(None, {})
    try:
        proc = _daemon(home, agents)
        request = TaskRequest(runtime="noop")
        first = time.time()
        for _ in range(held):
            submit(store, plan(store, [request], settings))
        _wait_finished(client, store, held)
        done = sum(1 for e in store.index_entries().values() if e.state == "completed")
        if done != held:
            raise RuntimeError(f"{held - done} of {held} tasks did not complete")
        last = max(e.event.at for e in store.read_range() if isinstance(e.event, TaskCompleted))
        time.sleep(HEARTBEAT_INTERVAL + 0.5)  # the memory of a drained backlog goes at a beat
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        _stop(proc)
        submitted: dict[str, float] = {}
        gaps: list[float] = []
        for entry in store.read_range():
            event = entry.event
            if isinstance(event, TaskSubmitted):
                submitted[event.task_id] = event.at
            elif isinstance(event, TaskStarted) and event.task_id in submitted:
                gaps.append((event.at - submitted[event.task_id]) * 1000)
        gaps.sort()
        restart = _restart_ms(store)
        return {
            "tasks/s": held / (last - first),
            "p50 ms": statistics.median(gaps),
            "p99 ms": gaps[int(len(gaps) * 0.99) - 1],
            "rss MiB": rss,
            "restart ms": restart,
            "completed": float(done),
        }
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def _wait_finished(client: Any, store: EventStore, held: int, stalled: float = 60.0) -> None:
    """Wait until `held` tasks have completed, looking cheaply while the per-task index's count
    of finished tasks moves (O(1) a look: reading the whole derived index twice a second had
    competed with the daemon for the machine) and reading the derived index whole only while it
    stands still (as it does at the end: the last entries are indexed at the next poke); fail
    once neither has moved for `stalled` seconds (a task lost, or a daemon stuck)."""
    finished, done, moved = -1, -1, time.monotonic()
    while True:
        time.sleep(0.5)
        now = int(client.hlen(store.keys.finished_summaries))
        if now >= held:
            return  # (the caller checks they all completed)
        if now != finished:
            finished, moved = now, time.monotonic()
            continue
        completed = sum(1 for e in store.index_entries().values() if e.state == "completed")
        if completed >= held:
            return
        if completed != done:
            done, moved = completed, time.monotonic()
        elif time.monotonic() - moved > stalled:
            raise RuntimeError(f"{completed} of {held} tasks completed, none in {stalled:.0f} s")


def _restart_ms(store: EventStore) -> float:
    """What a restarting daemon spends rebuilding its state: the newest snapshot + the tail."""
    started = time.perf_counter()
    replay(store, snapshots=SnapshotStore(store))
    return (time.perf_counter() - started) * 1000


def _print(label: str, figures: dict[str, float]) -> None:
    for name, value in figures.items():
        if name == "completed":
            continue
        target = TARGETS.get(name)
        better = "≥" if name == "tasks/s" else "≤"
        shown = f"{better} {target:,.0f}" if target is not None else ""
        print(f"{f'{label}: {name}':<44}{value:>12,.1f}{shown:>12}")
    print(f"{f'{label}: completed':<44}{figures['completed']:>12,.0f}")


def main() -> None:
    sizes = [int(x) for x in os.environ.get("FORGE_BENCH_HELD", "20000,200000").split(",") if x]
    print(f"{'stock daemon, no-op tasks, 8 agents':<44}{'measured':>12}{'target':>12}")
    rates: list[float] = []
    for held in sizes:
        figures = run(held)
        rates.append(figures["tasks/s"])
        _print(f"{held:,} tasks held", figures)
        if len(rates) > 1:
            share = f"{held:,} tasks held: tasks/s, % of {sizes[0]:,}'s"
            print(f"{share:<44}{100 * rates[-1] / rates[0]:>12,.1f}{'≥ 90':>12}")
    # the memory target is stated with 50 agents: the largest run again with 50
    _print(f"{sizes[-1]:,}, 50 agents", run(sizes[-1], agents=50))
    alone = floors.submitter_alone()
    print(f"{'this machine: the submitter alone, submits/s':<44}{alone:>12,.1f}")
    print("   (no daemon running: the tasks/s above submit the same way, on the same cores)")
