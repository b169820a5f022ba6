"""Approvals: what a waiting tool call looks like in the log, and the rules `--always` records.

A tool call that a task's permission policy neither allows nor denies is sent by Claude Code to
Forge's approval server, which appends `approval.requested` and waits for `approval.answered`.
This module holds the pure parts both sides and the projection share:

* `summarize(tool, input)`: the one line a person needs to decide (the command, the path, the
  URL, the pattern), redacted and cut short, never a whole file;
* `match_key(tool, input)`: a digest of the exact input an `--always` rule matches (Bash: the
  command; file tools: the path; web tools: the URL; any other tool: every call of it). The log
  holds the digest only, so a rule never carries a secret the command may contain;
* `ApprovalState` / `ApprovalRule`: an approval and a rule as the projection keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from events.redact import redact

__all__ = [
    "SUMMARY_CHARS",
    "ApprovalRule",
    "ApprovalState",
    "match_key",
    "rule_allows",
    "summarize",
]

SUMMARY_CHARS = 200

# The input field that says what a tool call does, per tool (the rest: any call of the tool).
_SUBJECT_KEYS: dict[str, str] = {
    "Bash": "command",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "Read": "file_path",
    "NotebookEdit": "notebook_path",
    "WebFetch": "url",
    "WebSearch": "query",
    "Glob": "pattern",
    "Grep": "pattern",
}
_FALLBACK_KEYS = ("command", "file_path", "path", "url", "pattern", "query")


class ApprovalRule(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Allow `tool` for the rest of a task: calls whose `match_key` equals `match` ("" = any)."""

    tool: str
    match: str = ""
    summary: str = ""  # what the rule was made from, for display


class ApprovalState(msgspec.Struct, kw_only=True, gc=False):
    """One approval request and, once given, its answer (the first answer in the log wins)."""

    approval_id: str
    task_id: str
    attempt: int
    tool: str
    summary: str = ""
    match: str = ""
    requested_at: float = 0.0
    expires_at: float = 0.0
    status: str = "pending"  # pending|allowed|denied|abandoned (its attempt ended first)
    answered_at: float | None = None
    by: str | None = None  # cli|timeout|unavailable
    always: bool = False
    reason: str | None = None


def _subject(tool: str, tool_input: Mapping[str, Any]) -> str | None:
    key = _SUBJECT_KEYS.get(tool)
    keys = (key,) if key is not None else _FALLBACK_KEYS
    for name in keys:
        value = tool_input.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def summarize(tool: str, tool_input: Mapping[str, Any]) -> str:
    """One redacted line saying what the call would do (at most `SUMMARY_CHARS` characters)."""
    subject = _subject(tool, tool_input)
    if subject is None:
        fields = ", ".join(sorted(str(k) for k in tool_input)[:8])
        subject = f"{{{fields}}}" if fields else ""
    text = " ".join(redact(subject).split())
    if len(text) > SUMMARY_CHARS:
        text = text[: SUMMARY_CHARS - 1] + "…"
    return text


def match_key(tool: str, tool_input: Mapping[str, Any]) -> str:
    """The digest an `--always` rule made from this call matches ("" for a tool whose rules
    match every call: one it has no subject field for)."""
    if tool not in _SUBJECT_KEYS:
        return ""
    subject = _subject(tool, tool_input) or ""
    return hashlib.sha256(f"{tool}\0{subject}".encode()).hexdigest()[:32]


def rule_allows(rules: list[ApprovalRule], tool: str, tool_input: Mapping[str, Any]) -> bool:
    """Whether one of `rules` allows this call."""
    key = match_key(tool, tool_input)
    return any(r.tool == tool and (not r.match or r.match == key) for r in rules)
