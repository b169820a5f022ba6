"""The daemon through real processes: start, status, a refused second start, stop, signals,
and a stale pid file after kill -9."""

from __future__ import annotations

import json
import os
import signal

from events import types as t
from forge.daemon import read_heartbeat
from forge.daemon_process import alive
from tests.daemon.conftest import DaemonHarness


def _completed(h: DaemonHarness, task_id: str) -> bool:
    task = h.state().tasks.get(task_id)
    return task is not None and task.state == "completed"


def test_start_status_refused_second_start_stop(harness: DaemonHarness) -> None:
    h = harness
    status = h.forge("daemon", "status")
    assert status.returncode == 1
    assert "daemon: not running" in status.stdout

    started = h.forge("daemon", "start")
    assert started.returncode == 0, started.stderr
    record = h.files.read()
    assert record is not None
    assert f"pid {record.pid}" in started.stdout
    assert alive(record.pid, record.create_time)

    again = h.forge("daemon", "start")
    assert again.returncode == 1
    assert again.stderr == f"Error: a daemon is already running (pid {record.pid})\n"
    foreground = h.forge("daemon", "start", "--foreground")
    assert foreground.returncode == 1
    assert "already running" in foreground.stderr

    info = json.loads(h.forge("daemon", "status", "--json").stdout)
    assert info["running"] is True
    assert info["pid"] == record.pid
    assert info["node_id"] == record.node_id
    assert info["epoch"] == 1

    task_id = h.forge("task", "submit", "-c", "sh -c 'echo hello'").stdout.strip()
    h.wait_for("the task to complete", lambda: _completed(h, task_id))
    assert h.forge("task", "logs", task_id).stdout == "hello\n"
    agents = json.loads(h.forge("agent", "list", "--json").stdout)
    assert agents
    agent_id = agents[0]["agent_id"]
    assert h.forge("agent", "pause", agent_id).returncode == 0
    h.wait_for("the pause", lambda: h.state().agents[agent_id].status == "paused")
    assert h.forge("agent", "resume", agent_id).returncode == 0
    verify = h.forge("events", "verify")
    assert verify.returncode == 0, verify.stdout
    assert "equals the replayed state" in verify.stdout

    stopped = h.forge("daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"daemon stopped (pid {record.pid}, node {record.node_id})" in stopped.stdout
    assert not alive(record.pid, record.create_time)
    assert h.files.read() is None
    assert read_heartbeat(h.client, h.namespace) is None
    assert any(isinstance(e.event, t.DaemonStopped) for e in h.store.read_range())

    refused = h.forge("agent", "spawn")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: no daemon is running")
    assert h.forge("daemon", "stop").stderr == "Error: no daemon is running\n"


def test_stale_pid_file_after_kill_9(harness: DaemonHarness) -> None:
    h = harness
    assert h.forge("daemon", "start").returncode == 0
    record = h.files.read()
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    h.wait_for("the daemon to die", lambda: not alive(record.pid, record.create_time))

    status = h.forge("daemon", "status")
    assert status.returncode == 1
    assert f"removed the stale pid file of pid {record.pid}" in status.stdout
    assert h.files.read() is None
    spawn = h.forge("agent", "spawn")  # its heartbeat has not expired, but it is dead
    assert spawn.returncode == 1
    assert "no daemon is running" in spawn.stderr

    restarted = h.forge("daemon", "start")
    assert restarted.returncode == 0, restarted.stderr
    second = h.files.read()
    assert second is not None
    assert second.pid != record.pid
    assert json.loads(h.forge("daemon", "status", "--json").stdout)["epoch"] == 2
    assert h.forge("daemon", "stop").returncode == 0


def test_sigterm_is_graceful_and_a_second_signal_forces(harness: DaemonHarness) -> None:
    h = harness
    h.env["FORGE_ORCHESTRATOR_SHUTDOWN_GRACE"] = "60"
    proc = h.foreground()
    h.wait_for("the pid file", lambda: (r := h.files.read()) is not None and r.pid == proc.pid)
    task_id = h.forge("task", "submit", "-c", "sleep 60").stdout.strip()
    h.wait_for("the task to run", lambda: h.state().tasks[task_id].state == "running")

    proc.send_signal(signal.SIGTERM)
    h.wait_for(
        "the graceful stop to begin",
        lambda: "stopping on signal" in (h.home / "foreground.log").read_text(),
    )
    assert proc.poll() is None  # waiting for the running task, within the grace period
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    events = [e.event for e in h.store.read_range()]
    assert any(isinstance(e, t.DaemonStopped) for e in events)
    assert h.agent_pids()
    assert h.live_agents() == []  # the forced stop killed the running agent
