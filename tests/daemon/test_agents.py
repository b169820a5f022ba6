"""`forge agent spawn|pause|resume|kill` against a running daemon, on a real agent process."""

from __future__ import annotations

import json

import psutil

from tests.daemon.conftest import DaemonHarness


def test_agent_commands_act_on_a_running_agent(harness: DaemonHarness) -> None:
    h = harness
    h.foreground()
    h.wait_for("the daemon", lambda: h.forge("daemon", "status").returncode == 0)

    assert h.forge("agent", "spawn", "--tag", "gpu").returncode == 0
    h.wait_for(
        "the spawned agent",
        lambda: any("gpu" in a.tags for a in h.state().agents.values()),
    )
    listed = json.loads(h.forge("agent", "list", "--json").stdout)
    assert any("gpu" in a["tags"] for a in listed)

    task_id = h.forge("task", "submit", "-c", "sleep 30", "--tag", "gpu").stdout.strip()
    running = h.wait_for(
        "the task to run",
        lambda: (x := h.state().tasks.get(task_id)) is not None and x.state == "running" and x,
    )
    agent_id = running.agent_id
    assert "gpu" in h.state().agents[agent_id].tags  # it ran on the agent that carries the tag
    sleeper = h.wait_for(
        "the agent's process",
        lambda: psutil.Process(running.pid).children(recursive=True),
    )[0]

    assert h.forge("agent", "pause", agent_id).returncode == 0
    h.wait_for("the process to stop", lambda: sleeper.status() == psutil.STATUS_STOPPED)
    assert h.state().agents[agent_id].status == "paused"
    assert h.forge("agent", "resume", agent_id).returncode == 0
    h.wait_for("the process to run", lambda: sleeper.status() != psutil.STATUS_STOPPED)

    killed = h.forge("agent", "kill", agent_id, "--force")
    assert killed.returncode == 0, killed.stderr
    h.wait_for("the agent to be gone", lambda: h.state().agents[agent_id].status == "terminated")
    h.wait_for("the process to be gone", lambda: not sleeper.is_running())
    task = h.wait_for(
        "the task to be retried elsewhere",
        lambda: (x := h.state().tasks[task_id]).attempt == 2 and x.state == "running" and x,
    )
    assert task.history[0].failure == "lost"
    assert task.agent_id != agent_id
    assert h.forge("task", "cancel", task_id).returncode == 0
    h.wait_for("the cancel", lambda: h.state().tasks[task_id].state == "cancelled")


def test_task_logs_follow_through_a_retry_until_the_task_ends(harness: DaemonHarness) -> None:
    h = harness
    h.foreground()
    h.wait_for("the daemon", lambda: h.forge("daemon", "status").returncode == 0)
    marker = h.home / "tried"
    script = (
        f"echo try; sleep 0.3; if [ ! -e {marker} ]; then touch {marker}; kill -9 $$; fi; "
        "echo second time lucky"
    )
    task_id = h.forge("task", "submit", "-c", "sh", "-c", "-c", "-c", script).stdout.strip()
    h.wait_for("the first attempt", lambda: h.state().tasks[task_id].attempt >= 1)
    followed = h.forge("task", "logs", task_id, "--follow", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [
        "try",
        "--- attempt 2 ---",
        "try",
        "second time lucky",
    ]
    assert h.state().tasks[task_id].state == "completed"
