"""Approvals: tool calls an agent's policy leaves open wait in the log for a person's answer.

`gate` decides one call (rules, request, wait, timeout); `mcp_server` is the stdio MCP server
Claude Code calls through `--permission-prompt-tool`; `launch` writes its `--mcp-config`.
"""

from __future__ import annotations

from forge.approvals.gate import ApprovalGate, Decision, new_approval_id
from forge.approvals.launch import PROMPT_TOOL, SERVER_NAME, ApprovalServer

__all__ = [
    "PROMPT_TOOL",
    "SERVER_NAME",
    "ApprovalGate",
    "ApprovalServer",
    "Decision",
    "new_approval_id",
]
