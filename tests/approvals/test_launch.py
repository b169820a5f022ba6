"""How an attempt's approval server is launched: the command line, the private config file,
which modes get one, and that no password reaches a command line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from actors.runtime import TaskSpec
from events.approvals import ApprovalRule
from forge.approvals import PROMPT_TOOL, ApprovalServer
from forge.runtimes.claude import ClaudeRuntime
from forge.runtimes.claude_command import build_argv, display_argv
from forge.settings import load_settings

PASSWORD = "s3cret-redis-password-for-approvals"


def _server() -> ApprovalServer:
    return ApprovalServer(
        home="/h",
        namespace="ns",
        redis_url="redis://127.0.0.1:1",
        redis_password=PASSWORD,
        timeout=42.0,
        python="/py",
    )


def test_the_config_file_is_private_and_the_password_never_on_a_command_line(
    tmp_path: Path,
) -> None:
    rules = [ApprovalRule(tool="Bash", match="abc")]
    path = _server().write_config(tmp_path / "logs" / "t1" / "attempt-1.mcp.json", "t1", 1, rules)
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    (entry,) = json.loads(Path(path).read_text())["mcpServers"].values()
    assert entry["command"] == "/py"
    assert entry["args"] == [
        "-P",
        "-m",
        "forge.approvals.mcp_server",
        "--task=t1",
        "--attempt=1",
        "--timeout=42",
        "--rule=Bash=abc",
    ]
    assert entry["env"]["FORGE_REDIS_PASSWORD"] == PASSWORD
    assert PASSWORD not in " ".join(entry["args"])
    spec = TaskSpec(task_id="t1", attempt=1, log_path="/l", prompt="go")
    argv = build_argv("claude", spec, approval_config=path)
    assert argv[argv.index("--permission-prompt-tool") + 1] == PROMPT_TOOL
    assert path not in display_argv(argv)  # --mcp-config values are masked when shown


def test_the_server_reads_its_connection_from_the_env_over_the_settings_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.toml").write_text('[redis]\nurl = "redis://elsewhere:6379"\n')
    env = {**_server().env(), "FORGE_HOME": str(tmp_path), "FORGE_REDIS_URL": ""}
    settings = load_settings(environ=env)
    assert settings.redis.url is None  # the daemon's embedded server, not the file's
    assert (settings.redis.namespace, settings.redis.password) == ("ns", PASSWORD)


@pytest.mark.parametrize(
    ("mode", "asks"),
    [
        (None, True),
        ("default", True),
        ("acceptEdits", True),
        ("dontAsk", False),
        ("bypassPermissions", False),
    ],
)
def test_modes_that_ask_nobody_get_no_approval_server(
    tmp_path: Path, mode: str | None, asks: bool
) -> None:
    runtime = ClaudeRuntime("claude", environ={}, approvals=_server())
    spec = TaskSpec(
        task_id="t1",
        attempt=1,
        log_path=str(tmp_path / "attempt-1.log"),
        prompt="go",
        permission_mode=mode,
    )
    found = runtime._approval_config(spec)
    assert (found is not None) == asks
    assert (tmp_path / "attempt-1.mcp.json").exists() == asks
    assert ClaudeRuntime("claude", environ={})._approval_config(spec) is None
