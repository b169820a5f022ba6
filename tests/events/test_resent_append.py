"""An append whose reply is lost is sent again by redis-py (it retries a command on a timeout or
a dropped connection), and the server may run both copies: a stalled server reads the first
one from a connection the client has given up. Each append carries a token, so the copy is
answered with the first one's results instead of being appended twice; a copy older than its
writer's last append is refused."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from events import types as t
from events.store import EventStore
from forge.server import EmbeddedServer
from forge.settings import load_settings
from forge.submit import TaskRequest, plan, submit
from tests.conftest import short_tempdir

NOW = 1_700_000_000.0


class _LosingConnection(redis.UnixDomainSocketConnection):
    """Loses the reply to the next EVALSHA once `armed`: the command has run, its reply is read
    and thrown away, and the caller sees a dropped connection."""

    armed = 0
    sent_script = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = b"".join(command) if isinstance(command, list) else command
        type(self).sent_script = b"EVALSHA" in packed[:64].upper()
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().read_response(*args, **kwargs)
        cls = type(self)
        if cls.armed and cls.sent_script:
            cls.armed -= 1
            self.disconnect()
            raise redis.ConnectionError("the reply was lost")
        return reply


@pytest.fixture
def losing(embedded_server: EmbeddedServer) -> Iterator[redis.Redis]:
    pool = redis.ConnectionPool(
        connection_class=_LosingConnection,
        path=str(embedded_server.socket),
        retry=Retry(NoBackoff(), 3),
    )
    client = redis.Redis(connection_pool=pool)
    yield client
    _LosingConnection.armed = 0
    client.close()


def _submitted(store: EventStore) -> list[str]:
    return [e.event.task_id for e in store.read_range() if isinstance(e.event, t.TaskSubmitted)]


def test_a_submission_whose_reply_is_lost_is_appended_once(losing: redis.Redis) -> None:
    store = EventStore(losing, "resent-submit")
    _LosingConnection.armed = 1
    ids = submit(store, plan(store, [TaskRequest(runtime="noop")], load_settings(None, {})))
    assert _LosingConnection.armed == 0  # the reply was lost, and the append sent again
    assert _submitted(store) == ids  # (it used to be two tasks: the copy drew a new id)


def test_a_claim_whose_reply_is_lost_is_still_granted(losing: redis.Redis) -> None:
    store = EventStore(losing, "resent-claim")
    store.append(t.TaskSubmitted(at=NOW, task_id="a", spec=t.TaskDefinition(runtime="noop")))
    claim = t.TaskAssigned(at=NOW, task_id="a", attempt=1, agent_id="ag", epoch=1, node_id="n")
    _LosingConnection.armed = 1
    store.claim("a", claim)  # the copy used to be refused: the claim was the task's already
    assert _LosingConnection.armed == 0
    assigned = [e for e in store.read_range() if isinstance(e.event, t.TaskAssigned)]
    assert len(assigned) == 1
    entry = store.task_index("a")
    assert entry is not None
    assert entry.state == "assigned"


def test_a_copy_older_than_its_writers_last_append_is_refused(
    redis_client: redis.Redis,
) -> None:
    store = EventStore(redis_client, "resent-stale")
    store.append(t.TaskSubmitted(at=NOW, task_id="a", spec=t.TaskDefinition(runtime="noop")))
    store.append(t.TaskSubmitted(at=NOW, task_id="b", spec=t.TaskDefinition(runtime="noop")))
    # the first call again (token 1, by the same writer), as a stalled server would run it
    keys = store._call_keys()
    args = ["", 1000, 1, "", "", "", "", 1, "e", b"\x80", 1]
    with pytest.raises(redis.ResponseError, match="STALE"):
        store._append(keys=keys, args=args)
    assert _submitted(store) == ["a", "b"]


@pytest.fixture
def stalling() -> Iterator[tuple[EmbeddedServer, psutil.Process]]:
    home = short_tempdir("fgr")
    server = EmbeddedServer(home)
    server.ensure_running()
    proc = psutil.Process(int(server.pidfile.read_text()))
    try:
        yield server, proc
    finally:
        if proc.is_running():
            proc.send_signal(signal.SIGCONT)
        server.stop(force=True)
        shutil.rmtree(home, ignore_errors=True)


def test_a_submission_across_a_stalled_server_is_one_task(
    stalling: tuple[EmbeddedServer, psutil.Process],
) -> None:
    server, proc = stalling
    client = server.client(timeout=0.2, retries=20)  # gives up on a reply many times over
    store = EventStore(client, "stalled")
    store.append(t.TaskSubmitted(at=NOW, task_id="before", spec=t.TaskDefinition()))
    planned = plan(store, [TaskRequest(runtime="noop")], load_settings(None, {}))
    proc.send_signal(signal.SIGSTOP)
    ids: list[list[str]] = []
    worker = threading.Thread(target=lambda: ids.append(submit(store, planned)))
    worker.start()
    time.sleep(1.0)  # several copies of the append are now waiting in the server's sockets
    proc.send_signal(signal.SIGCONT)
    worker.join(timeout=30)
    assert ids, "the submission did not return"
    assert _submitted(store) == ["before", *ids[0]]
    client.close()


@pytest.mark.parametrize("foreign", [b"", b"no bar", b"x|[]", b"\xff\xfe|{"])
def test_foreign_bytes_in_a_writers_record_do_not_stop_its_appends(
    redis_client: redis.Redis, foreign: bytes
) -> None:
    store = EventStore(redis_client, "resent-foreign")
    keys = store._call_keys()
    redis_client.set(keys[-1], foreign)
    store.append(t.TaskSubmitted(at=NOW, task_id="a", spec=t.TaskDefinition(runtime="noop")))
    assert _submitted(store) == ["a"]


def test_a_copy_whose_results_are_unreadable_is_an_error_not_a_second_append(
    redis_client: redis.Redis,
) -> None:
    store = EventStore(redis_client, "resent-unreadable")
    store.append(t.TaskSubmitted(at=NOW, task_id="a", spec=t.TaskDefinition(runtime="noop")))
    keys = store._call_keys()
    redis_client.set(keys[-1], b"1|not json")  # token 1: the call above, its record garbled
    args = ["", 1000, 1, "", "", "", "", 1, "e", b"\x80", 1]
    with pytest.raises(redis.ResponseError, match="ran already"):
        store._append(keys=keys, args=args)
    assert _submitted(store) == ["a"]
