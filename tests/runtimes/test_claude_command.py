"""Finding the claude binary, its command line and its environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from actors.runtime import TaskSpec
from events.redact import MASK
from forge.runtimes import claude_command
from forge.runtimes.claude_command import (
    ClaudeNotFound,
    agent_environment,
    build_argv,
    display_argv,
    find_claude_binary,
    secret_names,
)

SESSION = "0b7c1a52-6a43-4c8e-9c49-cf1d3c5bd2a1"


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def spec(**fields: object) -> TaskSpec:
    base: dict[str, object] = {"task_id": "t1", "attempt": 1, "log_path": "/tmp/x.log"}
    return TaskSpec(**(base | {"prompt": "do it", "session_id": SESSION} | fields))  # type: ignore[arg-type]


def test_configured_binary_wins(tmp_path: Path) -> None:
    mine = executable(tmp_path / "my-claude")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    executable(on_path / "claude")
    assert find_claude_binary(str(mine), str(on_path)) == str(mine)
    assert find_claude_binary("claude", str(on_path)) == str(on_path / "claude")


def test_configured_binary_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ClaudeNotFound, match="not an executable file"):
        find_claude_binary(str(tmp_path / "nope"), "")
    with pytest.raises(ClaudeNotFound, match="not on PATH"):
        find_claude_binary("no-such-claude", str(tmp_path))


def test_path_before_bundled(tmp_path: Path) -> None:
    executable(tmp_path / "claude")
    assert find_claude_binary(None, str(tmp_path)) == str(tmp_path / "claude")


def test_bundled_binary_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = claude_command.bundled_binary()
    if bundled is None:
        pytest.skip("claude-agent-sdk is not installed")
    assert bundled.endswith(os.path.join("claude_agent_sdk", "_bundled", "claude"))
    assert find_claude_binary(None, str(tmp_path)) == bundled
    monkeypatch.setattr(claude_command, "bundled_binary", lambda: None)
    with pytest.raises(ClaudeNotFound, match="forge\\[claude\\]"):
        find_claude_binary(None, str(tmp_path))


def test_first_attempt_argv() -> None:
    argv = build_argv(
        "/bin/claude",
        spec(
            model="opus",
            max_turns=5,
            budget_usd=0.25,
            allowed_tools=["Read", "Bash(git *)"],
            disallowed_tools=["WebFetch"],
            permission_mode="acceptEdits",
            append_system_prompt="Be brief.",
            mcp_config='{"mcpServers":{}}',
        ),
    )
    assert argv == [
        "/bin/claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        f"--session-id={SESSION}",
        "--model",
        "opus",
        "--max-turns",
        "5",
        "--max-budget-usd",
        "0.25",
        "--allowedTools",
        "Read,Bash(git *)",
        "--disallowedTools",
        "WebFetch",
        "--permission-mode",
        "acceptEdits",
        "--append-system-prompt",
        "Be brief.",
        "--mcp-config",
        '{"mcpServers":{}}',
        "--",
        "do it",
    ]


def test_retry_resumes_the_session() -> None:
    argv = build_argv("claude", spec(resume=True, prompt="-continue"), default_model="sonnet")
    assert f"--resume={SESSION}" in argv
    assert not any(a.startswith("--session-id") for a in argv)
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[-2:] == ["--", "-continue"]


def test_a_new_session_id_when_the_task_has_none() -> None:
    argv = build_argv("claude", spec(session_id=None, resume=True))
    (flag,) = [a for a in argv if a.startswith("--session-id=")]
    assert len(flag.split("=", 1)[1]) == 36


def test_environment_keeps_auth_and_drops_the_rest() -> None:
    process_env = {
        "ANTHROPIC_API_KEY": "sk-ant-api-secret-1",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "API_TIMEOUT_MS": "2000",
        "CLAUDECODE": "1",
        "FORGE_HOME": "/somewhere",
        "DATABASE_PASSWORD": "hunter22",
        "PATH": "/daemon/bin",
    }
    env = agent_environment({"PATH": "/task/bin", "CLAUDECODE": "1"}, process_env, "/work/dir")
    assert env == {
        "ANTHROPIC_API_KEY": "sk-ant-api-secret-1",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "API_TIMEOUT_MS": "2000",
        "PATH": "/task/bin",
        "PWD": "/work/dir",
    }
    assert secret_names(env) == ["ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY"]


def test_display_argv_hides_secret_options() -> None:
    argv = build_argv(
        "claude",
        spec(mcp_config='{"mcpServers":{"x":{"env":{"TOKEN":"abc"}}}}', prompt="p" * 500),
    )
    shown = display_argv(argv)
    assert shown[shown.index("--mcp-config") + 1] == MASK
    assert "abc" not in " ".join(shown)
    assert len(shown[-1]) <= 80


def test_registered_as_the_claude_runtime(tmp_path: Path) -> None:
    from forge.runtimes import get_runtime
    from forge.runtimes.claude import ClaudeRuntime
    from forge.settings import load_settings

    runtime = get_runtime("claude")
    assert isinstance(runtime, ClaudeRuntime)
    assert runtime.name == "claude"
    mine = executable(tmp_path / "my-claude")
    settings = load_settings(
        overrides={"runtime.claude_binary": str(mine), "runtime.default_model": "opus"},
        environ={"FORGE_HOME": str(tmp_path)},
    )
    configured = ClaudeRuntime.from_settings(settings, environ={})
    assert configured.resolve_binary() == str(mine)
    assert configured.default_model == "opus"
