"""The REAL claude binary in the sandbox, against the suite's mock Messages API, with
bypassPermissions (as root: IS_SANDBOX=1, what claude.sandbox sets): the model asks it to write
in its working directory, to write outside it with Bash and with Write, and to read a sibling
task's worktree and to open a socket to a port of the host that is not the API's (network
"api"). In the sandbox only the first works; without it, all do (the same script)."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.runtime import TaskSpec
from forge.runtimes.claude import ClaudeRuntime
from tests.claude_agents import BINARY, agent_environ, needs_claude
from tests.isolation.conftest import WAIT, needs_bwrap
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Text, ToolUse
from tests.runtimes.conftest import Collector

API_KEY = "sk-ant-api03-forge-sandbox-key-0123456789abcdef"

pytestmark = [pytest.mark.slow, needs_claude, needs_bwrap]


@pytest.fixture
def outside() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="forge-iso-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that is not the API's."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def _tool_results(mock: MockAnthropic) -> list[str]:
    texts = []
    for turn in mock.turns:
        for block in turn.body["messages"][-1]["content"]:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                texts.append(json.dumps(block.get("content")))
    return texts


@pytest.mark.parametrize("sandbox", [True, False])
def test_claude_changes_its_worktree_only(
    tmp_path: Path, mock: MockAnthropic, outside: Path, listener: int, sandbox: bool
) -> None:
    forge_home = tmp_path / "forge-home"
    work = forge_home / "worktrees" / "mine"
    sibling = forge_home / "worktrees" / "sibling"
    work.mkdir(parents=True)
    sibling.mkdir(parents=True)
    (sibling / "secret.txt").write_text("the sibling's work\n")
    user_home = tmp_path / "user"
    user_home.mkdir()
    mock.script(
        ToolUse("Write", {"file_path": str(work / "notes.txt"), "content": "mine\n"}, text="1"),
        ToolUse(
            "Bash",
            {
                "command": f"echo out > {outside}/by-bash.txt; cat {sibling}/secret.txt; "
                f"(exec 3<>/dev/tcp/127.0.0.1/{listener}) && echo NET-OPEN || echo NET-CLOSED",
                "description": "escape",
            },
            text="2",
        ),
        ToolUse("Write", {"file_path": str(outside / "by-write.txt"), "content": "x\n"}, text="3"),
        Text("Done."),
    )
    runtime = ClaudeRuntime(
        BINARY,
        default_model=DEFAULT_MODEL,
        environ=agent_environ(mock, API_KEY),
        progress_interval=0.0,
        hidden=[str(forge_home)],
    )
    spec = TaskSpec(
        task_id="claude-sandbox",
        attempt=1,
        log_path=str(forge_home / "logs" / "claude-sandbox" / "attempt-1.log"),
        prompt="Write notes, then try to leave",
        cwd=str(work),
        env={"PATH": "/usr/bin:/bin", "HOME": str(user_home), "IS_SANDBOX": "1"},
        permission_mode="bypassPermissions",
        sandbox=sandbox,
        network="api",
        timeout=WAIT,
    )
    handle = runtime.execute(spec, Collector())
    try:
        outcome = handle.wait(WAIT)
    finally:
        handle.terminate(grace=0)
        handle.wait(10)
    assert outcome is not None
    assert outcome.ok, outcome
    assert (work / "notes.txt").read_text() == "mine\n"
    results = "\n".join(_tool_results(mock))
    if sandbox:
        assert not (outside / "by-bash.txt").exists()
        assert not (outside / "by-write.txt").exists()
        assert "Read-only file system" in results
        assert "the sibling's work" not in results
        assert "NET-CLOSED" in results  # network "api": the mock's port only
        assert not (user_home / ".claude.json").exists()  # its home was the task's own
    else:
        assert (outside / "by-bash.txt").read_text() == "out\n"
        assert (outside / "by-write.txt").read_text() == "x\n"
        assert "the sibling's work" in results
        assert "NET-OPEN" in results
