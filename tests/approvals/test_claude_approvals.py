"""Approvals with the REAL claude binary, its approval server and the `forge` CLI.

The model (the mock Messages API) calls Bash with a command that the default permission mode
does not allow; Claude Code asks Forge's approval server (`--permission-prompt-tool`), which
records `approval.requested` and waits in the log. The tests answer with `forge approve` /
`forge deny` in a separate process, or let the request time out, and check what the agent got.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from events import types as t
from events.store import EventStore
from forge.approvals import ApprovalServer
from forge.runtimes.claude import ClaudeRuntime
from forge.server import EmbeddedServer
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)
from tests.claude_agents import BINARY, needs_claude
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-approvals-key-0123456789"
NAMESPACE = "test"  # running_fleet's
COMMAND = "echo approved > approved.txt"

pytestmark = needs_claude


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fap", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Setup:
    def __init__(
        self,
        client: redis.Redis,
        server: EmbeddedServer,
        mock: MockAnthropic,
        home: Path,
        tmp: Path,
    ) -> None:
        self.client = client
        self.mock = mock
        self.home = home  # FORGE_HOME of the CLI and of the approval server, HOME of the agent
        self.work = tmp / "work"
        self.work.mkdir()
        self.logs = tmp / "logs"
        self.url = f"unix://{server.socket}"
        self.cli_env = {
            "PATH": "/usr/bin:/bin",
            "FORGE_HOME": str(home),
            "FORGE_REDIS_URL": self.url,
            "FORGE_REDIS_NAMESPACE": NAMESPACE,
        }

    def runtimes(self, timeout: float = 60.0) -> dict[str, ClaudeRuntime]:
        environ = {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": self.mock.url,
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
        }
        approvals = ApprovalServer(
            home=str(self.home), namespace=NAMESPACE, redis_url=self.url, timeout=timeout
        )
        runtime = ClaudeRuntime(
            BINARY,
            default_model=DEFAULT_MODEL,
            environ=environ,
            progress_interval=0.0,
            approvals=approvals,
        )
        return {"claude": runtime}

    def spec(self, prompt: str = "write approved.txt") -> dict[str, Any]:
        return {
            "runtime": "claude",
            "prompt": prompt,
            "cwd": str(self.work),
            "env": {"HOME": str(self.home)},
            "max_attempts": 1,
        }

    def forge(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "forge", *args],
            env=self.cli_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture
def setup(
    redis_client: redis.Redis,
    embedded_server: EmbeddedServer,
    mock: MockAnthropic,
    home: Path,
    tmp_path: Path,
) -> Setup:
    return Setup(redis_client, embedded_server, mock, home, tmp_path)


def wait_for_request(store: EventStore, count: int = 1, timeout: float = 60.0) -> list[Any]:
    """Block on the log (XREAD) until `count` approval requests are in it."""
    deadline = time.monotonic() + timeout
    found = events_of(store, t.ApprovalRequested)
    after = store.last_id() or "0-0"
    while len(found) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(found)} of {count} approval requests after {timeout} s"
        reply: Any = store.client.xread({store.keys.log: after}, block=int(left * 1000), count=100)
        if reply:
            after = reply[0][1][-1][0].decode()
        found = events_of(store, t.ApprovalRequested)
    return found


def tool_results(mock: MockAnthropic) -> list[dict[str, Any]]:
    """The tool results the agent sent back to the model, in order."""
    out = []
    for message in mock.turns[-1].body.get("messages", []):  # each turn sends them all
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, list):
            out += [b for b in content if b.get("type") == "tool_result"]
    return out


def test_an_approved_command_runs_and_the_agent_finishes(setup: Setup) -> None:
    setup.mock.script(
        ToolUse("Bash", {"command": COMMAND, "description": "write"}), Text("Wrote it.")
    )
    with running_fleet(setup.client, setup.runtimes(), config(setup.logs)) as (
        fleet,
        store,
    ):
        submit(store, "a1", **setup.spec())
        (request,) = wait_for_request(store)
        assert (request.task_id, request.attempt, request.tool) == ("a1", 1, "Bash")
        assert request.summary == COMMAND
        assert request.expires_at == pytest.approx(request.at + 60.0)
        # the request was appended by the approval server: the fleet learns it from its tail
        waiting = wait_for(fleet, lambda s: bool(s.tasks["a1"].pending_approvals)).tasks["a1"]
        assert (waiting.state, waiting.pending_approvals) == ("running", (request.approval_id,))
        assert not (setup.work / "approved.txt").exists()  # the agent waits

        listed = setup.forge("approvals", "--json")
        assert listed.returncode == 0, listed.stderr
        (shown,) = json.loads(listed.stdout)
        assert (shown["approval_id"], shown["task_id"], shown["tool"], shown["summary"]) == (
            request.approval_id,
            "a1",
            "Bash",
            COMMAND,
        )
        human = setup.forge("approvals")
        assert request.approval_id in human.stdout
        assert COMMAND in human.stdout
        shown_task = setup.forge("task", "show", "a1")
        assert request.approval_id in shown_task.stdout

        answered = setup.forge("approve", request.approval_id)
        assert answered.returncode == 0, answered.stderr
        assert f"allowed {request.approval_id}" in answered.stdout

        state = wait_for(fleet, all_terminal("a1"), timeout=60)
        task = state.tasks["a1"]
        assert task.state == "completed", (task.last_failure, task.last_reason)
        assert task.result == "Wrote it."
        assert (setup.work / "approved.txt").read_text() == "approved\n"
        assert task.pending_approvals == ()
        approval = state.approvals[request.approval_id]
        assert (approval.status, approval.by) == ("allowed", "cli")
        assert [b.get("is_error", False) for b in tool_results(setup.mock)] == [False]
        again = setup.forge("approve", request.approval_id)
        assert again.returncode == 1
        assert "already allowed" in again.stderr
        assert "Traceback" not in again.stderr
        assert_replay_matches(store, state)


def test_a_denied_command_is_refused_and_the_agent_is_told_why(setup: Setup) -> None:
    setup.mock.script(
        ToolUse("Bash", {"command": COMMAND, "description": "write"}), Text("Could not.")
    )
    with running_fleet(setup.client, setup.runtimes(), config(setup.logs)) as (
        fleet,
        store,
    ):
        submit(store, "a2", **setup.spec())
        (request,) = wait_for_request(store)
        denied = setup.forge("deny", request.approval_id, "--reason", "not in this repo")
        assert denied.returncode == 0, denied.stderr
        state = wait_for(fleet, all_terminal("a2"), timeout=60)
        assert not (setup.work / "approved.txt").exists()
        (result,) = tool_results(setup.mock)
        assert result.get("is_error") is True
        assert "not in this repo" in str(result["content"])
        approval = state.approvals[request.approval_id]
        assert (approval.status, approval.by, approval.reason) == (
            "denied",
            "cli",
            "not in this repo",
        )
        (answer,) = events_of(store, t.ApprovalAnswered)
        assert (answer.allowed, answer.reason) == (False, "not in this repo")
        assert_replay_matches(store, state)


def test_an_unanswered_request_is_denied_after_the_timeout(setup: Setup) -> None:
    setup.mock.script(
        ToolUse("Bash", {"command": COMMAND, "description": "write"}), Text("Nobody answered.")
    )
    runtimes = setup.runtimes(timeout=1.5)
    with running_fleet(setup.client, runtimes, config(setup.logs)) as (
        fleet,
        store,
    ):
        submit(store, "a3", **setup.spec())
        state = wait_for(fleet, all_terminal("a3"), timeout=60)
        (request,) = events_of(store, t.ApprovalRequested)
        (answer,) = events_of(store, t.ApprovalAnswered)
        assert (answer.approval_id, answer.allowed, answer.by) == (
            request.approval_id,
            False,
            "timeout",
        )
        assert request.timeout == 1.5
        assert answer.at >= request.expires_at
        assert not (setup.work / "approved.txt").exists()
        (result,) = tool_results(setup.mock)
        assert result.get("is_error") is True
        assert "nobody answered" in str(result["content"])
        assert state.approvals[request.approval_id].status == "denied"
        late = setup.forge("approve", request.approval_id)
        assert late.returncode == 1
        assert "already denied by timeout" in late.stderr
        assert_replay_matches(store, state)


def test_always_allows_the_same_command_for_the_rest_of_the_task(setup: Setup) -> None:
    call = {"command": COMMAND, "description": "write"}
    other = {"command": "echo other > other.txt", "description": "write"}
    setup.mock.script(ToolUse("Bash", call), ToolUse("Bash", call), ToolUse("Bash", other))
    setup.mock.script(Text("Done twice."))
    with running_fleet(setup.client, setup.runtimes(), config(setup.logs)) as (
        fleet,
        store,
    ):
        submit(store, "a4", **setup.spec())
        (first,) = wait_for_request(store)
        answered = setup.forge("approve", first.approval_id, "--always")
        assert answered.returncode == 0, answered.stderr
        _, second = wait_for_request(store, count=2)  # the same command is not asked again
        assert second.summary == "echo other > other.txt"
        assert setup.forge("approve", second.approval_id).returncode == 0
        state = wait_for(fleet, all_terminal("a4"), timeout=60)
        assert state.tasks["a4"].state == "completed"
        assert [r.get("is_error", False) for r in tool_results(setup.mock)] == [False] * 3
        assert (setup.work / "other.txt").exists()
        assert [r.summary for r in state.tasks["a4"].approval_rules] == [COMMAND]
        assert_replay_matches(store, state)
