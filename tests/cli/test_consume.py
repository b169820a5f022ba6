"""`forge events consume`: real consumer processes on the session's server hand events to a
command or a webhook, at least once, resume where they stopped, and dead-letter what their
handler keeps refusing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from events import types as t
from events.keys import Keys
from tests.cli.helpers import NAMESPACE, invoke, one_error_line, store_of

WAIT = 30.0

HANDLER = """
import json, os, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
event = json.load(sys.stdin)
with open(out / "seen", "a") as f:
    env = os.environ
    f.write(f"{env['FORGE_EVENT_ID']} {env['FORGE_TASK_ID']} {event['type']} "
            f"{env['FORGE_EVENT_DELIVERY']}\\n")
if len((out / "seen").read_text().splitlines()) == int(sys.argv[2]):
    (out / "reached").touch()  # hold this event until the test says go
    deadline = time.monotonic() + 30
    while not (out / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def consumers(forge_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    env = (
        dict(os.environ) | forge_env | {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1"}
    )

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "forge", "events", "consume", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out, err


def failed(task_id: str) -> t.TaskFailed:
    return t.TaskFailed(at=time.time(), task_id=task_id, attempt=1, failure="exit_code")


def test_every_failure_is_handled_once_across_a_restart(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    store = store_of(redis_client)
    events: list[t.Event] = []
    for i in range(12):
        events.append(failed(f"task-{i}"))
        events.append(t.TaskProgress(at=time.time(), task_id=f"task-{i}", attempt=1, summary="x"))
    ids = store.append_batch(events)
    wanted = {(i, f"task-{n}") for n, i in enumerate(ids[::2])}
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    command = f"{sys.executable} {script} {tmp_path} 5"
    args = ("--group", "alerts", "--name", "c1", "--type", "task.failed", "--from-start")

    first = consumers(*args, "--exec", command)
    wait_for("the fifth event", (tmp_path / "reached").exists)
    first.send_signal(signal.SIGTERM)  # mid-stream: the fifth event is being handled
    (tmp_path / "go").touch()
    out, err = first.communicate(timeout=WAIT)
    assert first.returncode == 0, err
    assert len((tmp_path / "seen").read_text().splitlines()) == 5
    assert len(out.splitlines()) == 5  # one line per event, the held one included
    assert "Traceback" not in err

    second = consumers(*args, "--exec", command)
    wait_for("every failure", lambda: len((tmp_path / "seen").read_text().splitlines()) == 12)
    code, _, err = stop(second)
    assert code == 0, err
    seen = [line.split() for line in (tmp_path / "seen").read_text().splitlines()]
    assert {(i, task) for i, task, _, _ in seen} == wanted
    assert len(seen) == len(wanted)  # none twice
    assert {kind for _, _, kind, _ in seen} == {"task.failed"}
    log = Keys.for_namespace(NAMESPACE).log
    pending: Any = redis_client.xpending_range(log, "alerts", "-", "+", 100)
    left = {p["message_id"].decode() for p in pending}
    assert left <= set(ids[1::2])  # at most progress events read as it stopped, never a failure


def test_after_a_kill_9_only_the_event_in_flight_comes_again(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    ids = store_of(redis_client).append_batch([failed(f"task-{i}") for i in range(8)])
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    args = ("--group", "k", "--name", "c1", "--from-start", "--exec")
    first = consumers(*args, f"{sys.executable} {script} {tmp_path} 3")
    wait_for("the third event", (tmp_path / "reached").exists)
    first.kill()  # no clean stop: the third event was handled but not acknowledged
    first.communicate(timeout=WAIT)
    (tmp_path / "go").touch()

    second = consumers(*args, f"{sys.executable} {script} {tmp_path} 3")
    wait_for("every event", lambda: len((tmp_path / "seen").read_text().splitlines()) == 9)
    assert stop(second)[0] == 0
    seen = [line.split() for line in (tmp_path / "seen").read_text().splitlines()]
    assert [i for i, *_ in seen] == [*ids[:3], ids[2], *ids[3:]]  # at least once, in order
    # what the killed consumer had read (one batch: all 8) comes again as a second delivery
    assert [d for *_, d in seen] == ["1"] * 3 + ["2"] * 6


def test_a_failing_handler_sends_the_event_to_the_dead_letters(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    store = store_of(redis_client)
    [entry] = store.append_batch([failed("task-dl")])
    tries = tmp_path / "tries"
    command = f"echo $FORGE_EVENT_TYPE >> {tries}; echo 'no route to chat' >&2; exit 7"
    proc = consumers(
        "--group", "dl", "--from-start", "--retries", "2", "--backoff", "0.01", "--exec", command
    )
    dead_key = Keys.for_namespace(NAMESPACE).dead_letters("dl")
    wait_for("a dead letter", lambda: redis_client.xlen(dead_key) == 1)
    code, out, _ = stop(proc, signal.SIGINT)  # Ctrl-C ends it as cleanly
    assert code == 0
    assert tries.read_text().splitlines() == ["task.failed"] * 3  # the first try and 2 retries
    [(_, fields)] = redis_client.xrange(dead_key)
    assert fields[b"origin"].decode() == entry
    assert fields[b"reason"].decode() == "the command exited with status 7: no route to chat"
    assert f"{entry}  task.failed  dead_lettered after 3 tries" in out


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], Any]] = []
    refuse_first = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((dict(self.headers), body))
        refuse = type(self).refuse_first and len(type(self).received) == 1
        self.send_response(503 if refuse else 204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


def test_a_webhook_gets_matching_events_and_is_retried(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]]
) -> None:
    _Hook.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = store_of(redis_client)
        asked = t.ApprovalRequested(
            at=time.time(), approval_id="ap-1", task_id="task-a", attempt=1, tool="Bash"
        )
        ids = store.append_batch([failed("task-x"), asked])
        url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cret"
        proc = consumers(
            "--group", "chat", "--from-start", "--type", "approval.*", "--backoff", "0.01",
            "--webhook", url,
        )  # fmt: skip
        wait_for("the retried request", lambda: len(_Hook.received) == 2)
        code, out, err = stop(proc)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    for headers, body in _Hook.received:  # the refused request, then the accepted one
        assert body["type"] == "approval.requested"
        assert body["id"] == ids[1]
        assert body["approval_id"] == "ap-1"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Forge-Event-Type"] == "approval.requested"
    assert out == f"{ids[1]}  approval.requested  delivered after 2 tries\n"
    assert "s3cret" not in out + err  # a webhook's URL carries its secret: never printed


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--group", "g"], "give one of --exec CMD or --webhook URL"),
        (["--group", "g", "--exec", "true", "--webhook", "http://x"], "give one of"),
        (["--group", "g", "--webhook", "ftp://example.com/x"], "http:// or https://"),
        (["--group", "g", "--exec", "true", "--type", "task.fialed"], "matches no event type"),
        (["--group", "bad group", "--exec", "true"], "1 to 64 letters"),
        (["--group", "g", "--exec", "true", "--retries", "-1"], "--retries"),
    ],
)
def test_bad_input_is_one_clear_line(
    forge_env: dict[str, str], args: list[str], expected: str
) -> None:
    result = invoke(["events", "consume", *args])
    assert result.exit_code in (1, 2)
    assert expected in one_error_line(result)


def test_a_command_past_its_timeout_is_killed_and_dead_lettered(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]]
) -> None:
    store_of(redis_client).append_batch([failed("task-slow")])
    proc = consumers(
        "--group", "slow", "--from-start", "--retries", "0", "--timeout", "0.3",
        "--exec", "exec sleep 60",
    )  # fmt: skip
    dead_key = Keys.for_namespace(NAMESPACE).dead_letters("slow")
    wait_for("a dead letter", lambda: redis_client.xlen(dead_key) == 1)
    code, _, _ = stop(proc)
    assert code == 0
    [(_, fields)] = redis_client.xrange(dead_key)
    assert fields[b"reason"].decode() == "the command ran longer than 0.3 s"


def test_the_event_handed_over_has_its_secrets_masked(
    redis_client: redis.Redis, consumers: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    secret = "sk-ant-api03-" + "x" * 40
    spec = t.TaskDefinition(command=["true"], env={"ANTHROPIC_API_KEY": secret})
    [entry] = store_of(redis_client).append_batch(
        [t.TaskSubmitted(at=time.time(), task_id="task-s", spec=spec)]
    )
    got = tmp_path / "got.json"
    proc = consumers("--group", "sec", "--from-start", "--exec", f"cat > {got}")
    wait_for("the event", lambda: got.exists() and got.read_text())
    stop(proc)
    event = json.loads(got.read_text())
    assert event["id"] == entry
    assert event["type"] == "task.submitted"
    assert event["task_id"] == "task-s"
    assert secret not in got.read_text()
