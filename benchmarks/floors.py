"""What this machine allows before Forge does anything: the figures a target is to be read
against.

* the submitter alone: one Python process submitting no-op tasks one by one through the same
  `forge.submit` path, against a server with no daemon. A daemon's tasks/s in `bench_daemon`
  cannot pass it, since that run submits the same way, on the same cores;
* an idle round trip (a PING after 10 ms of quiet) and an idle wake (an `XADD` after 10 ms of
  quiet, to a reader blocked in `XREAD` in another process), p50 and p99. A task's start
  follows its submission by at least one such wake (the daemon's tail reader) and one round
  trip (its claim), plus the hand-overs between the daemon's threads.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from events import EventStore
from forge.server import EmbeddedServer
from forge.settings import load_settings
from forge.submit import TaskRequest, plan, submit

_QUIET = 0.01  # seconds between probes: the machine idles in between, as between real tasks

_WAKE_READER = """
import sys, time, redis
client = redis.Redis(unix_socket_path=sys.argv[1])
count, last, gaps = int(sys.argv[2]), "$", []
print("ready", flush=True)
while len(gaps) < count:
    reply = client.xread({"probe": last}, count=1, block=5000)
    now = time.time()
    if not reply:
        break
    last, fields = reply[0][1][-1]
    gaps.append(now - float(fields[b"t"]))
print(" ".join(repr(g) for g in gaps), flush=True)
"""


def _quantiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def submitter_alone(tasks: int = 10_000) -> float:
    """Submissions a second of one Python submitter, with no daemon running."""
    home = Path(tempfile.mkdtemp(prefix="fbf", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        store = EventStore(client, "forge")
        settings = load_settings(None, {})
        request = TaskRequest(runtime="noop")
        started = time.perf_counter()
        for _ in range(tasks):
            submit(store, plan(store, [request], settings))
        return tasks / (time.perf_counter() - started)
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def idle_wakes(samples: int = 300) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of an idle round trip and of an idle wake of another process."""
    home = Path(tempfile.mkdtemp(prefix="fbw", dir="/tmp"))
    server = EmbeddedServer(home)
    server.ensure_running()
    client = server.client()
    try:
        trips = []
        for _ in range(samples):
            time.sleep(_QUIET)
            sent = time.perf_counter()
            client.ping()
            trips.append(time.perf_counter() - sent)
        reader = subprocess.Popen(
            [sys.executable, "-c", _WAKE_READER, str(server.socket), str(samples)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout is not None
        reader.stdout.readline()  # ready (its first XREAD follows at once)
        time.sleep(0.2)
        for _ in range(samples):
            time.sleep(_QUIET)
            client.xadd("probe", {"t": repr(time.time())})
        wakes = [float(g) for g in reader.stdout.readline().split()]
        reader.wait(timeout=30)
        return {"round trip": _quantiles(trips), "wake": _quantiles(wakes)}
    finally:
        client.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
