"""What a Redis Sentinel failover loses: `make bench-redis` (a few minutes; real processes).

Each run starts a master, one replica (two in the last run) and one sentinel (quorum 1, down
after 1 s) on loopback, with the AOF on and `appendfsync` as given; four threads submit tasks
through Forge's `redis+sentinel://` client, recording each task id they were told was
appended; after 2 s the master is failed over (SENTINEL FAILOVER: it stays up and is demoted
later) or killed with SIGKILL (and started again 2 s later, from its own AOF, as a supervisor
would). When the set has settled, the log on the master is compared with what was
acknowledged:

* lost: acknowledged, not in the log;
* refused: submits that failed (never acknowledged), and how many of them are in the log anyway;
* duplicated: tasks whose submitted event is in the log twice (a client retry after a lost
  reply);
* gap: the longest time, from the fault on, in which no acknowledged submit was kept (what
  the clients saw as an outage, or as successes that were then lost).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

from events.errors import ForgeError
from events.store import EventStore
from events.types import TaskSubmitted
from forge.connection import connect
from forge.settings import Settings, load_settings
from forge.submit import TaskRequest, plan, submit
from tests.redis_prod.servers import RedisProcess, RedisSet

SERVICE = "forge"
SUBMITTERS = 4
BEFORE = 2.0  # seconds of submits before the fault
AFTER = 3.0  # seconds of kept submits after the gap
CAP = 40.0  # a run gives up waiting for the set to recover after this long
RESTART_AFTER = 2.0  # a killed master comes back after this long


@dataclass
class Run:
    appendfsync: str
    wait_replicas: int
    fault: str  # "failover" or "kill"
    replicas: int = 1
    acked: list[tuple[float, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the Redis set did not settle")
        time.sleep(0.05)


def _master_port(sentinel: RedisProcess) -> int:
    with sentinel.client() as s:
        return int(s.sentinel_get_master_addr_by_name(SERVICE)[1])


def _settled(sentinel: RedisProcess, replicas: int) -> bool:
    with sentinel.client() as s:
        found = s.sentinel_slaves(SERVICE)
    ok = [r for r in found if r["flags"] == "slave" and r.get("master-link-status") == "ok"]
    return len(ok) >= replicas


def _demoted(old: RedisProcess) -> bool:
    """Whether the old master now follows the new one, in sync."""
    try:
        with old.client(timeout=1.0) as c:
            info = c.info("replication")
    except (redis.RedisError, OSError):
        return False
    return info["role"] == "slave" and info.get("master_link_status") == "up"


def _submitter(run: Run, store: EventStore, settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        planned = plan(store, [TaskRequest(command="true")], settings)
        try:
            ids = submit(store, planned)
        except ForgeError as e:
            run.refused.append(planned[0].task_id)
            text = str(e)
            kind = "unavailable" if "unavailable" in text else text[:40]
            kind = "not acknowledged" if "not acknowledged" in text else kind
            run.errors[kind] += 1
            continue
        run.acked.append((time.monotonic(), ids[0]))


def one_run(run: Run, servers: RedisSet) -> dict[str, object]:
    master = servers.server(appendfsync=run.appendfsync, name="master")
    replicas = [
        servers.server(
            f"replicaof 127.0.0.1 {master.port}", appendfsync=run.appendfsync, name=f"replica{i}"
        )
        for i in range(run.replicas)
    ]
    sentinel = servers.sentinel(master, SERVICE)
    _until(lambda: _settled(sentinel, run.replicas))
    environ = {
        "FORGE_HOME": str(servers.root / "home"),
        "FORGE_REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}",
        "FORGE_REDIS_WAIT_REPLICAS": str(run.wait_replicas),
        "FORGE_REDIS_WAIT_TIMEOUT": "0.5",
    }
    settings = load_settings(environ=environ)
    store = EventStore(connect(settings), SERVICE)
    stop = threading.Event()
    threads = [
        threading.Thread(target=_submitter, args=(run, store, settings, stop))
        for _ in range(SUBMITTERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(BEFORE)
    fault_at = time.monotonic()
    if run.fault == "kill":
        master.kill()
    else:
        with sentinel.client() as s:
            s.execute_command("SENTINEL", "FAILOVER", SERVICE)
    restarted = run.fault != "kill"
    deadline = fault_at + CAP
    while time.monotonic() < deadline:
        if not restarted and time.monotonic() > fault_at + RESTART_AFTER:
            master.start()  # from its own AOF; Sentinel makes it a replica of the new master
            restarted = True
        recent = run.acked and run.acked[-1][0] > time.monotonic() - 0.2
        if restarted and recent and _demoted(master):
            break
        time.sleep(0.1)
    time.sleep(AFTER)
    stop.set()
    for thread in threads:
        thread.join(30)
    _until(lambda: _settled(sentinel, run.replicas), CAP)

    port = _master_port(sentinel)
    final = next(p for p in [master, *replicas] if p.port == port)
    with final.client() as client:
        submitted = Counter(
            e.event.task_id
            for e in EventStore(client, SERVICE).read_from("0-0")
            if isinstance(e.event, TaskSubmitted)
        )
    kept = sorted(at for at, task in run.acked if at > fault_at and task in submitted)
    gap = max((b - a for a, b in itertools.pairwise([fault_at, *kept])), default=0.0)
    lost = sum(1 for _, task in run.acked if task not in submitted)
    return {
        "appendfsync": run.appendfsync,
        "wait": run.wait_replicas,
        "replicas": run.replicas,
        "fault": run.fault,
        "acked": len(run.acked),
        "lost": lost,
        "refused": len(run.refused),
        "refused, in log": sum(1 for task in run.refused if task in submitted),
        "duplicated": sum(1 for n in submitted.values() if n > 1),
        "gap s": f"{gap:.1f}",
        "errors": ", ".join(f"{k} x{n}" for k, n in run.errors.most_common(2)) or "-",
    }


RUNS = [
    Run("everysec", 0, "failover"),
    Run("always", 0, "failover"),
    Run("everysec", 1, "failover"),
    Run("always", 1, "failover"),
    Run("everysec", 0, "kill"),
    Run("always", 0, "kill"),
    Run("everysec", 1, "kill"),
    Run("always", 1, "kill"),
    Run("always", 1, "failover", replicas=2),
]


def main(argv: list[str] | None = None) -> int:
    rows = []
    for run in [RUNS[int(i)] for i in argv] if argv else RUNS:  # argv: indices of RUNS
        servers = RedisSet()
        try:
            rows.append(one_run(run, servers))
        finally:
            servers.close()
        print("  ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    print()
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
