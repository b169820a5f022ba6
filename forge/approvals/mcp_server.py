"""Forge's approval server: the stdio MCP server behind `--permission-prompt-tool`.

Claude Code starts it (see `forge.approvals.launch`) and calls its one tool, `approve`, for
every tool call its permission rules leave open, with `{"tool_name", "input", "tool_use_id"}`.
The answer is one text block holding JSON, as Claude Code requires:
`{"behavior": "allow", "updatedInput": <input>}` or `{"behavior": "deny", "message": "..."}`.
The decision itself is `forge.approvals.gate.ApprovalGate`'s: through the log, never the daemon.

Run as `python -P -m forge.approvals.mcp_server --task=ID --attempt=N --timeout=SECONDS
[--rule=TOOL=DIGEST ...]`; the connection comes from the environment (`FORGE_HOME`,
`FORGE_REDIS_*`). stdout carries the protocol only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio.to_thread

from events.approvals import ApprovalRule
from events.errors import ForgeError
from events.redact import redact, register_secrets
from events.store import EventStore
from forge.approvals.gate import ApprovalGate, Decision
from forge.approvals.launch import SERVER_NAME, TOOL_NAME
from forge.connection import connect
from forge.settings import environment, load_settings, secret_values

__all__ = ["answer_text", "main"]

_DESCRIPTION = (
    "Forge's permission prompt: records the tool call in Forge's log and waits for "
    "`forge approve` or `forge deny`."
)


def answer_text(decision: Decision, tool_input: dict[str, Any]) -> str:
    """The tool's result text for Claude Code's permission-prompt contract."""
    if decision.allowed:
        return json.dumps({"behavior": "allow", "updatedInput": tool_input})
    return json.dumps({"behavior": "deny", "message": decision.message})


def _rule(text: str) -> ApprovalRule:
    tool, _, match = text.partition("=")
    if not tool:
        raise argparse.ArgumentTypeError(f"not TOOL=DIGEST: {text!r}")
    return ApprovalRule(tool=tool, match=match)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="forge.approvals.mcp_server")
    parser.add_argument("--task", required=True)
    parser.add_argument("--attempt", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--rule", type=_rule, action="append", default=[])
    return parser.parse_args(argv)


def _store_factory() -> EventStore:
    """The log of the namespace the daemon runs (the embedded server is never started here:
    it runs already, or the daemon will start it)."""
    environ = environment()
    settings = load_settings(environ=environ)
    register_secrets(secret_values(settings, environ))
    return EventStore(connect(settings, start_embedded=False), settings.redis.namespace)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    from mcp.server.mcpserver import MCPServer  # the SDK takes most of the start-up time

    gate = ApprovalGate(_store_factory, args.task, args.attempt, args.timeout, args.rule)
    try:
        gate.start()
    except ForgeError as e:  # a settings file that does not load: each call will say so
        sys.stderr.write(f"forge approvals: {redact(str(e))}\n")
    server: MCPServer[Any] = MCPServer(SERVER_NAME)

    @server.tool(name=TOOL_NAME, description=_DESCRIPTION, structured_output=False)
    async def approve(tool_name: str, input: dict[str, Any], tool_use_id: str | None = None) -> str:
        try:
            decision = await anyio.to_thread.run_sync(gate.decide, tool_name, input)
        except ForgeError as e:
            decision = Decision(False, f"Forge could not decide: {redact(str(e))}")
        return answer_text(decision, input)

    server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
