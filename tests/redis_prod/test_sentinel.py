"""Redis Sentinel against real processes: one master, one replica and ONE sentinel with quorum 1
(enough to elect itself, and quick; production runs three). Forge connects through the
`redis+sentinel://` URL, a failover happens during a run of submits, and with
`appendfsync always` and `redis.wait_replicas = 1` nothing that was acknowledged is lost.

The timing here is Sentinel's, not asserted: the old master goes on accepting writes until
Sentinel turns it into a replica (its next INFO, up to 10 s later); Forge's WAIT refuses to
acknowledge those (no replica confirms them), so they fail instead of vanishing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from events.errors import StoreError
from events.store import EventStore
from events.types import TaskSubmitted
from forge.connection import connect
from forge.settings import load_settings
from forge.submit import plan, submit
from forge.task_request import TaskRequest
from tests.redis_prod.conftest import forge, forge_env, one_error_line
from tests.redis_prod.servers import RedisProcess, RedisSet, make_certificates

PASSWORD = "sentinel-Canary-9e0a"
SERVICE = "forge"
WAIT = 30.0


def _until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _replicated_set(servers: RedisSet) -> tuple[RedisProcess, RedisProcess, RedisProcess]:
    master = servers.server(password=PASSWORD, appendfsync="always")
    replica = servers.server(
        f"replicaof 127.0.0.1 {master.port}", password=PASSWORD, appendfsync="always"
    )
    sentinel = servers.sentinel(master, SERVICE, password=PASSWORD)
    with sentinel.client() as s:

        def replica_ready() -> bool:
            found = s.sentinel_slaves(SERVICE)
            return bool(found) and all(
                r["flags"] == "slave" and r.get("master-link-status") == "ok" for r in found
            )

        _until(replica_ready, "the sentinel to see the replica in sync")
    return master, replica, sentinel


def test_nothing_acknowledged_is_lost_across_a_failover(servers: RedisSet, tmp_path: Path) -> None:
    """A daemon runs the tasks throughout: it waits out the appends refused meanwhile as an
    outage of the log, and its live state equals the replayed log afterwards."""
    _, replica, sentinel = _replicated_set(servers)
    url = f"redis+sentinel://:{PASSWORD}@127.0.0.1:{sentinel.port}/{SERVICE}"
    env = forge_env(tmp_path, url, wait_replicas="1", wait_timeout="0.5")
    env |= {"FORGE_ORCHESTRATOR_SHUTDOWN_GRACE": "5", "FORGE_RETRY_BASE_DELAY": "0.1"}
    settings = load_settings(environ=env)
    store = EventStore(connect(settings), SERVICE)
    acked: list[str] = []
    refused: list[str] = []
    stop = threading.Event()

    def submitter() -> None:
        while not stop.wait(0.05):
            planned = plan(store, [TaskRequest(command="true", runtime="noop")], settings)
            try:
                acked.extend(submit(store, planned))
            except StoreError as e:
                refused.append(str(e))

    started = forge(env, "daemon", "start")
    assert started.returncode == 0, started.stderr
    thread = threading.Thread(target=submitter)
    thread.start()
    try:
        _until(lambda: len(acked) >= 20, "submits before the failover")
        with sentinel.client() as s:
            s.execute_command("SENTINEL", "FAILOVER", SERVICE)
            _until(
                lambda: s.sentinel_get_master_addr_by_name(SERVICE)[1] == replica.port,
                "the replica to be promoted",
            )
        switched = len(acked)
        _until(lambda: len(acked) >= switched + 20, "submits to the new master")
        stop.set()
        thread.join(WAIT)

        def ran(task: str) -> bool:
            entry = store.task_index(task)
            return entry is not None and entry.state == "completed"

        _until(lambda: all(ran(task) for task in acked), "the daemon to run every task")
        verified = forge(env, "events", "verify")  # the daemon's live state included
        status = forge(env, "status")
    finally:
        stop.set()
        thread.join(WAIT)
        forge(env, "daemon", "stop")

    with replica.client() as new_master:
        assert new_master.info("replication")["role"] == "master"
        logged = {
            e.event.task_id
            for e in EventStore(new_master, SERVICE).read_from("0-0")
            if isinstance(e.event, TaskSubmitted)
        }
    assert [task for task in acked if task not in logged] == []
    assert all("not acknowledged" in r for r in refused), refused
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "equals the replayed state" in verified.stdout
    assert f"redis+sentinel://:***@127.0.0.1:{sentinel.port}/{SERVICE}" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr
    assert PASSWORD not in (tmp_path / "daemon.log").read_text()


def test_unreachable_sentinels_are_one_line(tmp_path: Path) -> None:
    env = forge_env(tmp_path, f"redis+sentinel://:{PASSWORD}@127.0.0.1:1,127.0.0.1:2/{SERVICE}")

    line = one_error_line(forge(env, "status"))

    assert "no sentinel answers: Error 111 connecting to 127.0.0.1:1." in line
    assert PASSWORD not in line


def test_an_unknown_service_is_one_line(servers: RedisSet, tmp_path: Path) -> None:
    master = servers.server()
    sentinel = servers.sentinel(master, SERVICE)
    env = forge_env(tmp_path, f"redis+sentinel://127.0.0.1:{sentinel.port}/elsewhere")

    line = one_error_line(forge(env, "status"))

    assert "no sentinel knows a master of service 'elsewhere' that is up" in line


def test_a_retried_command_follows_the_master_sentinel_names(
    servers: RedisSet, tmp_path: Path
) -> None:
    """A write that meets the demoted master (READONLY) is retried on the master Sentinel names
    now, not on the same address again (redis/redis-py#3874, worked around in forge.connection).
    Sentinel is re-pointed by hand here, at once, instead of by a failover."""
    old, new = servers.server(), servers.server()
    sentinel = servers.sentinel(old, SERVICE)
    url = f"redis+sentinel://127.0.0.1:{sentinel.port}/{SERVICE}"
    settings = load_settings(environ=forge_env(tmp_path, url, failover_timeout="2"))
    client = connect(settings)
    client.set(f"forge:{{{SERVICE}}}:probe", "old")
    with sentinel.client() as s:
        s.execute_command("SENTINEL", "REMOVE", SERVICE)
        s.execute_command("SENTINEL", "MONITOR", SERVICE, "127.0.0.1", new.port, 1)
    with old.client() as o:
        o.execute_command("REPLICAOF", "127.0.0.1", new.port)  # writes there: READONLY

    client.set(f"forge:{{{SERVICE}}}:probe", "new")

    with new.client() as n:
        assert n.get(f"forge:{{{SERVICE}}}:probe") == b"new"


def test_rediss_sentinel_is_tls_to_the_sentinels_and_the_servers(
    servers: RedisSet, tmp_path: Path
) -> None:
    certs = make_certificates(servers.root / "certs")
    master = servers.server(password=PASSWORD, tls=certs)
    servers.server(f"replicaof 127.0.0.1 {master.port}", password=PASSWORD, tls=certs)
    sentinel = servers.sentinel(master, SERVICE, password=PASSWORD, tls=certs)
    url = f"rediss+sentinel://:{PASSWORD}@localhost:{sentinel.port}/{SERVICE}"
    files = {"tls_cert": str(certs.client_cert), "tls_key": str(certs.client_key)}
    env = forge_env(tmp_path, url, tls_ca=str(certs.ca), **files)

    submitted = forge(env, "task", "submit", "--command", "true")
    refused = forge(forge_env(tmp_path, url, tls_ca=str(certs.other_ca), **files), "status")

    assert submitted.returncode == 0, submitted.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in one_error_line(refused)


def test_a_master_short_of_replicas_is_an_outage(servers: RedisSet, tmp_path: Path) -> None:
    """`min-replicas-to-write` (docs/redis.md) refuses writes as WAIT does: an outage of the
    log to Forge (which a daemon waits out), not a fault."""
    server = servers.server("min-replicas-to-write 1", "min-replicas-max-lag 10")
    env = forge_env(tmp_path, f"redis://127.0.0.1:{server.port}/0")

    line = one_error_line(forge(env, "task", "submit", "--command", "true"))

    assert "append: Redis unavailable: NOREPLICAS" in line
