"""Claude Code's `permission_denials`: the tool calls an attempt was refused, made fit to record.

The `result` line lists every refused call with its whole input (a `Write` carries the file's
content). Only the tool's name, the call id and a short redacted summary of the input leave this
module: the command, path, pattern or URL the call named, never a content or a replacement text.
Pure functions; see docs/claude.md ("Permissions") for what a denial does to the task.
"""

from __future__ import annotations

from typing import Any

from actors.runtime import PermissionDenial
from events.redact import redact

__all__ = ["MAX_DENIALS", "SUMMARY_CHARS", "denied_reason", "read_denials"]

MAX_DENIALS = 20
"""The most denials recorded for one attempt (a looping agent may be refused hundreds of times);
the failure's reason still gives the full count."""

SUMMARY_CHARS = 200
_NAME_CHARS = 100
_ARG_KEYS = ("command", "file_path", "notebook_path", "path", "pattern", "url", "query")


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return redact(line if len(line) <= limit else line[: limit - 1] + "…")


def _summary(tool: str, tool_input: Any) -> str:
    if isinstance(tool_input, dict):
        for key in _ARG_KEYS:
            value = tool_input.get(key)
            if isinstance(value, str) and value.strip():
                return _short(value, SUMMARY_CHARS)
    return ""


def read_denials(raw: Any) -> list[PermissionDenial]:
    """The denials of a result line's `permission_denials` (anything malformed is skipped),
    at most `MAX_DENIALS` of them."""
    if not isinstance(raw, list):
        return []
    found: list[PermissionDenial] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        tool = item.get("tool_name")
        if not isinstance(tool, str) or not tool.strip():
            continue
        call = item.get("tool_use_id")
        found.append(
            PermissionDenial(
                tool=_short(tool, _NAME_CHARS),
                tool_use_id=_short(call, _NAME_CHARS) if isinstance(call, str) else "",
                summary=_summary(tool, item.get("tool_input")),
            )
        )
    return found[:MAX_DENIALS]


def denied_reason(denials: list[PermissionDenial], total: int | None = None) -> str:
    """One line for the failure: how many calls were refused, and the first few of them."""
    count = len(denials) if total is None else total
    shown = "; ".join(f"{d.tool} {d.summary}".strip() for d in denials[:3])
    more = ", …" if count > 3 else ""
    noun = "call" if count == 1 else "calls"
    return _short(f"{count} tool {noun} refused by the permission policy: {shown}{more}", 500)
