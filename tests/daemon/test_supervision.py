"""The daemon supervises its orchestrator: a stalled server is ridden out, any other failure is
restarted from the log, and a daemon that cannot go on exits non-zero -- never a zombie.

Each test runs a real daemon on its own embedded server (so that the server can be stopped,
clobbered or killed without touching the session's), with a 1 s Redis timeout."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
from collections.abc import Iterator

import psutil
import pytest

from events import types as t
from forge.daemon_process import DaemonFiles
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir
from tests.daemon.conftest import DaemonHarness

pytestmark = pytest.mark.slow


@pytest.fixture
def private() -> Iterator[tuple[DaemonHarness, EmbeddedServer]]:
    """A harness whose daemon uses an embedded server of its own FORGE_HOME."""
    home = short_tempdir("fgp")
    server = EmbeddedServer(home)
    server.ensure_running()
    h = DaemonHarness(server)
    h.home = home
    h.files = DaemonFiles(home)
    del h.env["FORGE_REDIS_URL"]
    h.env |= {
        "FORGE_HOME": str(home),
        "FORGE_REDIS_CONNECT_TIMEOUT": "1",
        "FORGE_ORCHESTRATOR_HEALTH_CHECK_INTERVAL": "0.5",
    }
    try:
        yield h, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server_pid(server), signal.SIGCONT)
        h.cleanup()
        server.stop()


def server_pid(server: EmbeddedServer) -> int:
    return int(server.pidfile.read_text())


def servers_of(server: EmbeddedServer) -> list[int]:
    """Every live server process of this home (there must never be two)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(server.directory) in part for part in proc.info["cmdline"] or ()):
                found.append(proc.info["pid"])
    return found


def daemon_log(h: DaemonHarness) -> str:
    return (h.home / "foreground.log").read_text(errors="replace")


def submit(h: DaemonHarness, command: str) -> str:
    done = h.forge("task", "submit", "-c", command)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def events(h: DaemonHarness, kind: type[t.Event]) -> list[t.Event]:
    return [e.event for e in h.store.read_range() if isinstance(e.event, kind)]


def test_a_stalled_server_is_ridden_out(private: tuple[DaemonHarness, EmbeddedServer]) -> None:
    h, server = private
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    task = submit(h, "sleep 1; echo done")
    h.wait_for("the task to run", lambda: task in h.state().tasks and h.state().tasks[task].pid)

    pid = server_pid(server)
    os.kill(pid, signal.SIGSTOP)  # the task ends while nobody can write its outcome
    try:
        h.wait_for("the orchestrator to fail", lambda: "orchestrator failed" in daemon_log(h))
        assert servers_of(server) == [pid]  # no twin started on a server that does not answer
    finally:
        os.kill(pid, signal.SIGCONT)

    h.wait_for("the task to complete", lambda: h.state().tasks[task].state == "completed")
    assert daemon.poll() is None, daemon_log(h)
    assert "orchestrator restarted from the log" in daemon_log(h)
    assert len(events(h, t.DaemonStarted)) == 2
    again = submit(h, "echo again")
    h.wait_for("the next task", lambda: h.state().tasks[again].state == "completed")
    completed = collections.Counter(e.task_id for e in events(h, t.TaskCompleted))  # type: ignore[attr-defined]
    assert completed == {task: 1, again: 1}

    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0
    assert h.live_agents() == []


def test_a_failed_orchestrator_is_restarted_from_the_log(
    private: tuple[DaemonHarness, EmbeddedServer],
) -> None:
    h, _ = private
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    task = submit(h, "sleep 1; echo done")
    h.wait_for("the task to run", lambda: task in h.state().tasks and h.state().tasks[task].pid)

    log, saved = h.store.keys.log, h.store.keys.log + ":saved"
    with h.client.pipeline(transaction=True) as pipe:  # a foreign writer clobbers the log key
        pipe.rename(log, saved).set(log, "not a stream").execute()
    try:
        h.wait_for("the orchestrator to fail", lambda: "orchestrator failed" in daemon_log(h))
    finally:
        with h.client.pipeline(transaction=True) as pipe:
            pipe.delete(log).rename(saved, log).execute()

    h.wait_for("the task to complete", lambda: h.state().tasks[task].state == "completed")
    assert daemon.poll() is None, daemon_log(h)
    assert "WRONGTYPE" in daemon_log(h)
    again = submit(h, "echo again")
    h.wait_for("the next task", lambda: h.state().tasks[again].state == "completed")
    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0


def test_a_daemon_that_cannot_go_on_exits_non_zero(
    private: tuple[DaemonHarness, EmbeddedServer],
) -> None:
    h, _ = private
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    task = submit(h, "sleep 1; echo done")
    h.wait_for("the task to run", lambda: task in h.state().tasks and h.state().tasks[task].pid)
    log, saved = h.store.keys.log, h.store.keys.log + ":saved"
    with h.client.pipeline(transaction=True) as pipe:  # and it stays clobbered
        pipe.rename(log, saved).set(log, "not a stream").execute()
    try:
        assert daemon.wait(timeout=60) == 1
    finally:
        with h.client.pipeline(transaction=True) as pipe:
            pipe.delete(log).rename(saved, log).execute()
    assert "giving up" in daemon_log(h)
    assert h.files.read() is None  # no pid file of a daemon that is gone
