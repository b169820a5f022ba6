"""An approval request survives the daemon: `kill -9` it while the REAL claude agent waits for
an answer, start it again, `forge approve` from the CLI, and the agent finishes its work.

The agent and its approval server (Claude Code's own stdio MCP child) are detached from the
daemon and wait on the log, so neither the request nor the answer depends on a daemon.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from events import types as t
from events.state import TaskState
from tests.claude_agents import BINARY, needs_claude
from tests.daemon.conftest import DaemonHarness
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-approvals-restart-0123456789"
COMMAND = "echo approved > approved.txt"

pytestmark = needs_claude


@pytest.fixture
def agent_home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="far", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _approval_servers(agent_pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(agent_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "forge.approvals.mcp_server" in " ".join(p.cmdline())]


def test_a_request_survives_a_daemon_kill_and_is_approved_after_the_restart(
    harness: DaemonHarness, mock: MockAnthropic, agent_home: Path, tmp_path: Path
) -> None:
    h = harness
    work = tmp_path / "work"
    work.mkdir()
    h.env |= {
        "HOME": str(agent_home),  # the agent's HOME (runtime.env_allowlist passes it on)
        "FORGE_RUNTIME_CLAUDE_BINARY": str(BINARY),
        "FORGE_RUNTIME_DEFAULT_MODEL": DEFAULT_MODEL,
        # a policy that leaves Bash open: Claude Code's default mode, nothing pre-allowed
        "FORGE_CLAUDE_PERMISSION_MODE": "default",
        "FORGE_CLAUDE_ALLOWED_TOOLS": "",
        "FORGE_CLAUDE_APPROVAL_TIMEOUT": "300",
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": mock.url,
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    mock.script(ToolUse("Bash", {"command": COMMAND, "description": "write"}), Text("Done."))
    first = h.foreground()
    h.wait_for("the daemon", lambda: h.forge("daemon", "status").returncode == 0)
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(f'[[task]]\nprompt = "write approved.txt"\ncwd = "{work}"\n')
    submitted = h.forge("task", "submit", "-f", str(tasks))
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    request: t.ApprovalRequested = h.wait_for(
        "the approval request",
        lambda: next(
            (e.event for e in h.store.read_range() if isinstance(e.event, t.ApprovalRequested)),
            None,
        ),
        timeout=90,
    )
    assert (request.task_id, request.tool, request.summary) == (task_id, "Bash", COMMAND)
    (agent_pid,) = h.live_agents()
    assert _approval_servers(agent_pid), "the approval server runs under the agent"

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert h.live_agents() == [agent_pid]  # the agent outlives its daemon, still waiting
    assert _approval_servers(agent_pid)
    waiting = h.forge("approvals")
    assert waiting.returncode == 0, waiting.stderr
    assert request.approval_id in waiting.stdout

    h.foreground()
    h.wait_for("the daemon again", lambda: h.forge("daemon", "status").returncode == 0)
    status = h.forge("status")
    assert request.approval_id in status.stdout
    approved = h.forge("approve", request.approval_id)
    assert approved.returncode == 0, approved.stderr

    task: TaskState = h.wait_for(
        "the task to end",
        lambda: (x := h.state().tasks.get(task_id)) is not None and x.terminal and x,
        timeout=90,
    )
    assert task.state == "completed", (task.last_failure, task.last_reason)
    assert task.result == "Done."
    assert (work / "approved.txt").read_text() == "approved\n"
    assert h.state().approvals[request.approval_id].status == "allowed"
