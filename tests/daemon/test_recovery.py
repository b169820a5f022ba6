"""Crash recovery through real processes: SIGKILL the daemon while tasks run, start it again,
and every task ends exactly once, with no agent process left behind."""

from __future__ import annotations

import collections
import signal

from events import types as t
from tests.daemon.conftest import DaemonHarness

TASKS = 6


def test_kill_9_while_tasks_run_then_restart(harness: DaemonHarness) -> None:
    h = harness
    h.env["FORGE_ORCHESTRATOR_MAX_CONCURRENT_AGENTS"] = "3"
    first = h.foreground()
    h.wait_for("the pid file", lambda: (r := h.files.read()) is not None and r.pid == first.pid)
    tasks = h.home / "tasks.toml"  # one submission: six CLI starts may outlast a task
    tasks.write_text(
        "".join(f'[[task]]\ncommand = "sleep 1; echo done {i}"\n' for i in range(TASKS))
    )
    ids = h.forge("task", "submit", "-f", str(tasks)).stdout.split()
    assert len(ids) == TASKS
    h.wait_for(
        "three tasks to run",
        lambda: sum(h.state().tasks[i].state == "running" for i in ids) == 3,
    )

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert h.live_agents()  # the agents outlive their daemon, detached

    second = h.foreground()
    h.wait_for(
        "every task to complete",
        lambda: all(h.state().tasks[i].state == "completed" for i in ids),
        timeout=60,
    )
    completions = collections.Counter(
        e.event.task_id for e in h.store.read_range() if isinstance(e.event, t.TaskCompleted)
    )
    assert completions == dict.fromkeys(ids, 1)
    for task_id in ids:
        assert h.forge("task", "logs", task_id).stdout.startswith("done ")

    assert h.forge("daemon", "stop").returncode == 0
    assert second.wait(timeout=30) == 0
    assert h.live_agents() == []
