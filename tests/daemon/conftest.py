"""Fixtures of the daemon tests: real `forge` processes on a private FORGE_HOME and namespace,
sharing the session's embedded server through FORGE_REDIS_URL. Every process a test starts —
daemons and the agents they ran — is killed at teardown."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest
import redis

from events import types as t
from events.replay import replay
from events.state import FleetState
from events.store import EventStore
from events.task_index import TaskIndex
from forge.daemon_process import DaemonFiles, alive
from forge.server import EmbeddedServer
from tests.conftest import short_tempdir

WAIT = 30.0


class DaemonHarness:
    """A FORGE_HOME, a namespace, and the processes started on them."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.home = short_tempdir("fgd")
        self.namespace = f"d{secrets.token_hex(4)}"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "PYTEST_"))
        } | {
            "FORGE_HOME": str(self.home),
            "FORGE_REDIS_URL": f"unix://{server.socket}",
            "FORGE_REDIS_NAMESPACE": self.namespace,
            "FORGE_ORCHESTRATOR_SHUTDOWN_GRACE": "5",
            "FORGE_RETRY_BASE_DELAY": "0.1",
        }
        self.client: redis.Redis = server.client()
        self.store = EventStore(self.client, self.namespace)
        self.files = DaemonFiles(self.home)
        self.started: list[subprocess.Popen[str]] = []

    def forge(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def foreground(self) -> subprocess.Popen[str]:
        """`forge daemon start --foreground` as a child process (its log in the home)."""
        log = open(self.home / "foreground.log", "a")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "forge", "daemon", "start", "--foreground"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        log.close()
        self.started.append(proc)
        return proc

    def state(self) -> FleetState:
        """The replayed state, with finished tasks read back into `tasks` (per-task index)."""
        return TaskIndex(self.store).full_state(replay(self.store, use_snapshot=False)[0])

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def agent_pids(self) -> list[tuple[int, float | None]]:
        return [
            (e.event.pid, e.event.create_time)
            for e in self.store.read_range()
            if isinstance(e.event, t.TaskStarted) and e.event.pid is not None
        ]

    def live_agents(self) -> list[int]:
        alive = []
        for pid, created in self.agent_pids():
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE and (
                    created is None or abs(proc.create_time() - created) < 0.05
                ):
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        return alive

    def cleanup(self) -> None:
        record = self.files.read()
        pids = [p.pid for p in self.started if p.poll() is None]
        if record is not None and alive(record.pid, record.create_time):
            pids.append(record.pid)
        agents = self.live_agents()
        pids += agents
        # what the agents started lives in their sessions, in process groups of its own
        sessions = {_session(pid) for pid in agents} - {None}
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if os.getsid(proc.pid) in sessions:
                    pids.append(proc.pid)
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for proc in self.started:
            proc.wait(timeout=10)
        self.client.close()


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


@pytest.fixture
def harness(embedded_server: EmbeddedServer) -> Iterator[DaemonHarness]:
    h = DaemonHarness(embedded_server)
    yield h
    h.cleanup()
