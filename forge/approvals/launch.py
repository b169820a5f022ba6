"""How an attempt's approval server is launched: the `--mcp-config` file Claude Code reads.

The server is a stdio MCP server that Claude Code starts as its own child, so it lives exactly
as long as the agent and survives a daemon restart with it. It is `python -P -m
forge.approvals.mcp_server` with the interpreter running Forge (`-P`: a `forge/` directory in the
task's working directory is never imported instead). What it needs to reach the log travels in
the `env` of its entry in a private (0600) file beside the attempt's log, never on a command
line: the Redis URL and password there override whatever the server's settings file says.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from events.approvals import ApprovalRule
from forge.private_files import private_directory, write_private

if TYPE_CHECKING:
    from forge.settings import Settings

__all__ = ["PROMPT_TOOL", "SERVER_NAME", "ApprovalServer"]

SERVER_NAME = "forge"
TOOL_NAME = "approve"
PROMPT_TOOL = f"mcp__{SERVER_NAME}__{TOOL_NAME}"
"""What `--permission-prompt-tool` names."""

_TOOL_TIMEOUT_MARGIN = 60.0  # Claude Code must wait longer for the tool than the tool waits


class ApprovalServer(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to start approval servers for the attempts of one daemon."""

    home: str
    namespace: str
    redis_url: str | None = None
    redis_password: str | None = None
    connect_timeout: float = 5.0
    timeout: float = 600.0  # seconds a call waits for an answer
    python: str = sys.executable

    @classmethod
    def from_settings(cls, settings: Settings) -> ApprovalServer:
        return cls(
            home=settings.home,
            namespace=settings.redis.namespace,
            redis_url=settings.redis.url,
            redis_password=settings.redis.password,
            connect_timeout=settings.redis.connect_timeout,
            timeout=settings.claude.approval_timeout,
        )

    def argv(self, task_id: str, attempt: int, rules: Iterable[ApprovalRule] = ()) -> list[str]:
        """The server's command line (nothing secret: ids, the timeout, rule digests)."""
        argv = [
            self.python,
            "-P",
            "-m",
            "forge.approvals.mcp_server",
            f"--task={task_id}",
            f"--attempt={attempt}",
            f"--timeout={self.timeout:g}",
        ]
        argv += [f"--rule={r.tool}={r.match}" for r in rules]
        return argv

    def env(self) -> dict[str, str]:
        """The server's connection settings (override the settings file it may also read)."""
        return {
            "FORGE_HOME": self.home,
            "FORGE_REDIS_NAMESPACE": self.namespace,
            "FORGE_REDIS_URL": self.redis_url or "",
            "FORGE_REDIS_PASSWORD": self.redis_password or "",
            "FORGE_REDIS_CONNECT_TIMEOUT": f"{self.connect_timeout:g}",
        }

    def mcp_config(
        self, task_id: str, attempt: int, rules: Iterable[ApprovalRule] = ()
    ) -> dict[str, object]:
        command, *args = self.argv(task_id, attempt, rules)
        server = {"type": "stdio", "command": command, "args": args, "env": self.env()}
        return {"mcpServers": {SERVER_NAME: server}}

    def write_config(
        self, path: str | Path, task_id: str, attempt: int, rules: Iterable[ApprovalRule] = ()
    ) -> str:
        """Write the `--mcp-config` file (0600) and return its path."""
        private_directory(Path(path).parent)
        write_private(path, msgspec.json.encode(self.mcp_config(task_id, attempt, rules)))
        return str(path)

    def tool_timeout_ms(self) -> str:
        """`MCP_TOOL_TIMEOUT` for the agent: Claude Code gives up on a tool call after it."""
        return str(int((self.timeout + _TOOL_TIMEOUT_MARGIN) * 1000))
