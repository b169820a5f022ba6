"""A real daemon serving /metrics, /healthz and /readyz: the numbers agree with
`forge status --json`, readiness follows the log's server, liveness the orchestrator."""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import psutil
import pytest

from forge.server import EmbeddedServer
from tests.daemon.conftest import DaemonHarness
from tests.metrics.conftest import get, health, samples
from tests.mock_anthropic.server import MockAnthropic

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def submit(h: DaemonHarness, *args: str) -> str:
    done = h.forge("task", "submit", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def by_label(found: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for (n, k), v in found.items() if n == name and v}


def one(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def status_json(h: DaemonHarness) -> dict[str, Any]:
    done = h.forge("status", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_metrics_agree_with_status(metered: tuple[DaemonHarness, int]) -> None:
    h, port = metered
    h.env["FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS"] = "1"
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    h.wait_for("the metrics port", lambda: health(port, "/healthz")[0] == 200)
    ok = [submit(h, "-c", "true", "--priority", str(p)) for p in (1, 3, 3)]
    bad = [submit(h, "-c", "exit 3") for _ in range(2)]
    h.wait_for(
        "every task to end",
        lambda: (
            all(h.state().tasks[x].terminal for x in ok + bad if x in h.state().tasks)
            and len(h.state().tasks) == 5
        ),
    )
    # one agent at most: a task holding it until a gate file exists keeps the next one queued
    gate = h.home / "gate"
    holder = submit(h, "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done")
    h.wait_for("the holder to run", lambda: h.state().tasks[holder].state == "running")
    held = submit(h, "-c", "true", "--priority", "2")

    def settled() -> tuple[Samples, dict[str, Any]] | None:
        before, status, after = samples(port), status_json(h), samples(port)
        events = status["log"]["events"]
        if one(before, "forge_log_events") == one(after, "forge_log_events") == events:
            return after, status
        return None

    found, status = h.wait_for("a quiet log", settled)
    assert by_label(found, "forge_tasks", "state") == status["tasks"]
    assert status["tasks"] == {"completed": 3, "failed": 2, "running": 1, "queued": 1}
    assert by_label(found, "forge_agents", "state") == status["agents"]
    queue = {p: n for p, n in status["queue"].items() if n}
    assert by_label(found, "forge_queue_depth", "priority") == queue == {"2": 1}
    assert one(found, "forge_spend_total_usd") == pytest.approx(status["spend_usd"], abs=1e-6)
    assert one(found, "forge_approvals_waiting") == len(status["approvals"])
    assert one(found, "forge_log_events") == status["log"]["events"]
    assert one(found, "forge_log_length") == status["log"]["events"]
    assert one(found, "forge_log_reachable") == 1
    # counted from the events: 6 attempts, 3 completed, 2 failed at once (an exit code)
    assert one(found, "forge_task_attempts_started_total", runtime="shell") == 6
    assert one(found, "forge_task_attempts_completed_total", runtime="shell") == 3
    assert one(found, "forge_task_attempts_failed_total", runtime="shell") == 2
    assert one(found, "forge_tasks_dead_lettered_total", runtime="shell") == 0
    ran = "forge_task_attempt_duration_seconds_count"
    assert one(found, ran, runtime="shell", outcome="completed") == 3
    assert one(found, ran, runtime="shell", outcome="failed") == 2
    assert one(found, "forge_task_queue_wait_seconds_count", runtime="shell") == 6
    # the daemon, through its heartbeat
    assert one(found, "forge_daemon_up") == 1
    assert one(found, "forge_daemon_epoch") == status["daemon"]["epoch"]
    assert one(found, "forge_daemon_uptime_seconds") > 0
    assert ("forge_daemon_behind_events", ()) in found
    status_code, body = get(port, "/nowhere")
    assert status_code == 404
    assert "/metrics" in body

    gate.touch()
    h.wait_for("the held task", lambda: h.state().tasks[held].state == "completed")
    after = samples(port)
    assert one(after, "forge_task_attempts_completed_total", runtime="shell") == 5
    assert one(after, "forge_queue_depth", priority="2") == 0
    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0


def test_readiness_follows_the_server_and_liveness_the_orchestrator(
    private_metered: tuple[DaemonHarness, EmbeddedServer, int], mock: MockAnthropic
) -> None:
    h, server, port = private_metered
    h.env["ANTHROPIC_BASE_URL"] = mock.url  # the claude runtime's model API: the suite's mock
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    h.wait_for("alive", lambda: health(port, "/healthz")[0] == 200)  # the fleet has started
    assert health(port, "/healthz") == (200, {"ok": True, "checks": {"orchestrator": "running"}})
    h.wait_for("ready", lambda: health(port, "/readyz")[0] == 200)
    checks = health(port, "/readyz")[1]["checks"]
    assert checks["log"] == "ok"
    assert checks["model_api"] in (
        f"{mock.url.removeprefix('http://')} reachable",
        "not used (no claude runtime)",  # where no claude binary could be found
    )

    gate = h.home / "gate"
    task = submit(h, "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done")
    h.wait_for("the task to run", lambda: h.state().tasks[task].state == "running")

    pid = int(server.pidfile.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        _code, body = h.wait_for("unready", lambda: (r := health(port, "/readyz"))[0] == 503 and r)
        assert body["checks"]["log"].startswith("unreachable")
        # the task ends; the orchestrator's append of it fails after the 1 s timeout: it
        # dies, and liveness says so while the daemon waits for the log
        gate.touch()
        submit_while_stopped = h.wait_for(
            "the orchestrator to die", lambda: (r := health(port, "/healthz"))[0] == 503 and r
        )
        assert (
            submit_while_stopped[1]["checks"]["orchestrator"] == "the orchestrator is not running"
        )
        assert samples(port)[("forge_log_reachable", ())] == 0  # the last figures, and why
    finally:
        os.kill(pid, signal.SIGCONT)

    h.wait_for("ready again", lambda: health(port, "/readyz")[0] == 200)
    h.wait_for("alive again", lambda: health(port, "/healthz")[0] == 200)
    h.wait_for("the task to complete", lambda: h.state().tasks[task].state == "completed")
    assert daemon.poll() is None
    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0


def test_no_port_is_opened_unless_asked(metered: tuple[DaemonHarness, int]) -> None:
    h, _ = metered
    del h.env["FORGE_METRICS_PORT"]
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)
    h.wait_for("the heartbeat", lambda: status_json(h)["daemon"]["running"])
    listening = [
        c for c in psutil.Process(daemon.pid).net_connections("inet") if c.status == "LISTEN"
    ]
    assert listening == []
    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0


def test_a_port_in_use_is_one_clear_error(metered: tuple[DaemonHarness, int]) -> None:
    h, port = metered
    daemon = h.foreground()
    h.wait_for("the metrics port", lambda: health(port, "/healthz")[0] == 200)
    h.env["FORGE_HOME"] = str(h.home / "other")  # a second daemon, another home, same port
    done = h.forge("daemon", "start", "--foreground", "--metrics-port", str(port))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
    assert "Traceback" not in done.stderr
    assert daemon.poll() is None


def test_bad_metrics_settings_are_refused(metered: tuple[DaemonHarness, int]) -> None:
    h, _ = metered
    done = h.forge("daemon", "start", "--metrics-port", "0")
    assert done.returncode == 2
    assert "--metrics-port" in done.stderr
    h.env["FORGE_METRICS_PORT"] = "lots"
    done = h.forge("daemon", "start", "--foreground")
    assert done.returncode == 1
    assert "metrics.port" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_flag_reaches_a_background_daemon(metered: tuple[DaemonHarness, int]) -> None:
    h, port = metered
    del h.env["FORGE_METRICS_PORT"]
    started = h.forge("daemon", "start", "--metrics-port", str(port))
    assert started.returncode == 0, started.stderr
    assert f"metrics: http://127.0.0.1:{port}/metrics" in started.stdout
    h.wait_for("the metrics port", lambda: health(port, "/healthz")[0] == 200)
    busy = h.forge("daemon", "start", "--metrics-port", str(port))  # refused: one runs
    assert busy.returncode == 1
    assert h.forge("daemon", "stop").returncode == 0
    assert get(port, "/healthz")[0] == 0  # the port closed with the daemon
