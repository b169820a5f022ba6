"""`forge task logs` of real Claude Code agents: a transcript, `--raw`, and `--follow` through
a retry. The REAL `claude` binary runs under a fleet against the mock Messages API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from forge.runtimes.claude import ClaudeRuntime
from tests.actors.helpers import all_terminal, config, running_fleet, submit, wait_for
from tests.claude_agents import claude_runtimes, needs_claude
from tests.cli.helpers import invoke
from tests.mock_anthropic import DEFAULT_MODEL, ApiError, MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-logs-key-0123456789"

pytestmark = [
    needs_claude,
    pytest.mark.usefixtures("forge_env"),
]


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fcl", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runtimes(mock: MockAnthropic) -> dict[str, ClaudeRuntime]:
    return claude_runtimes(mock, API_KEY)


def _logs(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    monkeypatch.setenv("FORGE_REDIS_NAMESPACE", "test")  # the fleet's namespace
    result = invoke(["task", "logs", *args])
    assert result.exit_code == 0, result.stderr
    assert API_KEY not in result.stdout
    return result.stdout.splitlines()


def test_logs_of_a_claude_task_read_as_a_transcript(
    redis_client: redis.Redis,
    mock: MockAnthropic,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    notes = work / "notes.txt"
    mock.script(
        ToolUse("Write", {"file_path": str(notes), "content": "one\ntwo\n"}, text="Writing."),
        ToolUse("Bash", {"command": "ls", "description": "list the files"}),
        Text("Done: the notes are written."),
    )
    with running_fleet(redis_client, _runtimes(mock), config(tmp_path / "logs")) as (fleet, s):
        submit(s, "c1", runtime="claude", prompt="notes", cwd=str(work), env={"HOME": str(home)})
        state = wait_for(fleet, all_terminal("c1"), timeout=60)
    assert state.tasks["c1"].terminal

    out = _logs(monkeypatch, "c1")
    assert out[0].startswith("── session ")
    assert f"model {DEFAULT_MODEL}" in out[0]
    write = out.index(f"● Write: {notes} (2 lines, 8 B)")
    assert out[write - 1] == "Writing."
    if notes.exists():  # the permission mode let the write through
        assert out[write + 1].startswith("  ⎿ ")
    else:  # refused (default mode): said where it happened, and again with the result
        assert out[write + 1].startswith("  ✗ permission denied: Claude requested permissions")
        assert not any(line.startswith("  ✗ permission denied: ") for line in out[write + 2 :])
        assert f"   ✗ denied: Write: {notes} (2 lines, 8 B)" in out
    bash = out.index("● Bash: ls")
    assert out[bash + 1].startswith("  ⎿ ")
    assert "Done: the notes are written." in out
    (done,) = [line for line in out if re.match(r"(✓ done|⚠ done, but .*) · 3 turns · ", line)]
    assert " tokens " in done
    assert done.endswith(f"${state.tasks['c1'].cost_usd:.4f}")
    assert not any(line.startswith("{") for line in out)

    raw = _logs(monkeypatch, "c1", "--raw")
    assert [json.loads(line)["type"] for line in raw][-1] == "result"


def test_follow_renders_every_attempt_of_a_retried_task_as_it_runs(
    redis_client: redis.Redis,
    mock: MockAnthropic,
    home: Path,
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    overloaded = ApiError.overloaded()
    mock.script(overloaded, overloaded, Text("Second attempt worked."))
    env = {**os.environ, "FORGE_REDIS_NAMESPACE": "test"}
    argv = [sys.executable, "-m", "forge", "task", "logs", "c2", "--follow"]
    with running_fleet(redis_client, _runtimes(mock), config(tmp_path / "logs")) as (fleet, s):
        submit(s, "c2", runtime="claude", prompt="hi", cwd=str(work), env={"HOME": str(home)})
        follower = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            state = wait_for(fleet, all_terminal("c2"), timeout=60)
            stdout, stderr = follower.communicate(timeout=60)  # it ends with the task
        finally:
            follower.kill()
            follower.wait()
    assert [r.failure for r in state.tasks["c2"].history] == ["api_error", None]
    assert follower.returncode == 0, stderr
    out = stdout.decode().splitlines()
    assert API_KEY not in stdout.decode()
    assert out[0].startswith("── session ")
    (retry,) = [line for line in out if line.startswith("↻ API retry 1/1 in ")]
    assert retry.endswith(": overloaded (529)")
    failed = next(i for i, line in enumerate(out) if line.startswith("✗ failed (api_error): "))
    assert out[failed + 2] == "--- attempt 2 ---"
    assert out[failed + 3].startswith("── session ")
    assert "Second attempt worked." in out
    assert out[-1].startswith("✓ done · 1 turn · ")
