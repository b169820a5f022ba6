"""Isolation through the whole stack: `forge task submit` with --sandbox and limits, a real
daemon running the attempts (the runtimes built from the settings, so the sandbox hides this
FORGE_HOME), and what `forge task show` and `forge top` say of each ending."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.cli.top.widgets import finished_row
from forge.runtimes.cgroups import Limiter
from forge.server import EmbeddedServer
from tests.daemon.conftest import DaemonHarness
from tests.isolation.conftest import needs_bwrap, needs_cgroups

pytestmark = [pytest.mark.slow, needs_bwrap, needs_cgroups]


@pytest.fixture
def harness(embedded_server: EmbeddedServer) -> Iterator[DaemonHarness]:
    h = DaemonHarness(embedded_server)
    yield h
    h.cleanup()


@pytest.fixture
def outside() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="forge-iso-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_limits_and_sandbox_through_the_daemon(harness: DaemonHarness, outside: Path) -> None:
    h = harness
    work = h.home / "work"
    work.mkdir()
    (h.home / "daemon-secret.txt").write_text("hunter2\n")
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)

    def submit(name: str, command: str, options: str = "") -> str:
        tasks = h.home / f"{name}.toml"
        tasks.write_text(
            f"[[task]]\nname = {name!r}\ncommand = {json.dumps(command)}\ncwd = {str(work)!r}\n"
            f"max_attempts = 1\n{options}\n"
        )
        done = h.forge("task", "submit", "--file", str(tasks))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    hog = f"{sys.executable} -I -c 'b = bytearray(300 * 2**20)'"
    oom = submit("oom", hog, 'memory = "64M"')
    bomb = submit("bomb", "bash -c 'bomb() { bomb & bomb & wait; }; bomb'", "pids = 64")
    escape = f"echo out > {outside}/escaped.txt; cat {h.home}/daemon-secret.txt"
    jailed = submit("jailed", escape, 'sandbox = true\nnetwork = "off"')
    free = submit("free", escape)

    def ended() -> bool:
        tasks = h.state().tasks
        return all(tasks[t].terminal for t in (oom, bomb, jailed, free))

    h.wait_for("every task to end", ended, timeout=60)
    tasks = h.state().tasks
    assert (tasks[oom].state, tasks[oom].last_failure) == ("failed", "oom")
    # a transient failure: out of attempts, the task is dead-lettered
    assert (tasks[bomb].state, tasks[bomb].last_failure) == ("dead_lettered", "unhealthy")
    assert (tasks[jailed].state, tasks[jailed].last_failure) == ("failed", "exit")
    assert tasks[free].state == "completed"
    assert (outside / "escaped.txt").read_text() == "out\n"  # only the free one wrote it

    shown = h.forge("task", "show", oom).stdout
    assert "oom: killed by the kernel: over its memory limit of 64 MiB" in shown
    assert "limits: memory 64 MiB" in shown
    shown = h.forge("task", "show", bomb).stdout
    assert "unhealthy: hit its process limit of 64" in shown
    shown = h.forge("task", "show", jailed).stdout
    assert "sandbox: bubblewrap   network: off" in shown
    logs = h.forge("task", "logs", jailed).stdout
    assert "Read-only file system" in logs
    assert "hunter2" not in logs
    assert "hunter2" in h.forge("task", "logs", free).stdout

    why = str(finished_row(tasks[oom])[-1])  # forge top's "why" column of finished tasks
    assert why.startswith("oom: killed by the kernel: over its memory limit of 64 MiB")

    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0


def test_a_limited_attempt_outlives_a_killed_daemon_and_is_adopted(harness: DaemonHarness) -> None:
    """kill -9 of the daemon leaves the attempt running in its cgroup; the next daemon finds
    the cgroup from the record beside the log, reports the OOM that happens after it took
    over, and removes the cgroup."""
    h = harness
    work = h.home / "work"
    work.mkdir()
    code = (
        "import os, time\n"
        "print('READY', flush=True)\n"
        "while not os.path.exists('go'): time.sleep(0.01)\n"
        "b = bytearray(300 * 2**20)\n"
    )
    tasks = h.home / "adopt.toml"
    tasks.write_text(
        f"[[task]]\ncommand = {json.dumps([sys.executable, '-I', '-c', code])}\n"
        f'cwd = {json.dumps(str(work))}\nmemory = "64M"\nmax_attempts = 1\n'
    )
    first = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == first.pid)
    done = h.forge("task", "submit", "--file", str(tasks))
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    log = h.home / "logs" / task_id / "attempt-1.log"
    h.wait_for("the command", lambda: log.exists() and "READY" in log.read_text())
    limiter = Limiter.load(str(log))
    assert limiter is not None
    assert all(os.path.isdir(d) for d in limiter.dirs.values())

    first.kill()
    first.wait(timeout=10)
    second = h.foreground()
    h.wait_for("a new daemon", lambda: (r := h.files.read()) is not None and r.pid == second.pid)
    (work / "go").write_text("")
    h.wait_for("the task to fail", lambda: h.state().tasks[task_id].terminal)
    task = h.state().tasks[task_id]
    assert (task.state, task.last_failure) == ("failed", "oom")
    assert len(task.history) == 1  # adopted, not run again
    assert all(not os.path.exists(d) for d in limiter.dirs.values())
    assert h.forge("daemon", "stop").returncode == 0
    assert second.wait(timeout=30) == 0
