"""How `forge task list` and `forge task show` present a claude task's permission policy and the
tool calls its agent was refused."""

from __future__ import annotations

from events.state import TaskState
from events.types import TaskDefinition

__all__ = ["denied_note", "permission_lines"]

_SHOWN = 20  # refused calls listed by `task show`; the count covers every one


def denied_note(task: TaskState) -> str:
    """A short note for the list's STATE column: how many calls were refused, if any."""
    return f" ({len(task.denials)} refused)" if task.denials else ""


def _policy(d: TaskDefinition) -> str:
    if d.permission_mode is None:
        return "the daemon's default (submitted before policies were recorded)"
    parts = [d.permission_mode]
    if d.permission_mode == "dontAsk" and not d.allowed_tools:
        parts[0] += " (locked: read-only tools only)"
    if d.allowed_tools:
        parts.append("allow " + ", ".join(d.allowed_tools))
    if d.disallowed_tools:
        parts.append("deny " + ", ".join(d.disallowed_tools))
    if d.add_dirs:
        parts.append("dirs " + ", ".join(d.add_dirs))
    return "   ".join(parts)


def permission_lines(task: TaskState) -> list[str]:
    """The policy line and, when the agent was refused anything, one line per refused call."""
    if task.definition.runtime != "claude":
        return []
    lines = [f"permissions: {_policy(task.definition)}"]
    if task.denials:
        lines.append(f"refused: {len(task.denials)} tool call(s); the work they were for is undone")
        for denial in task.denials[:_SHOWN]:
            shown = f"{denial.tool} {denial.summary}".strip()
            lines.append(f"  attempt {denial.attempt}: {shown}")
        if len(task.denials) > _SHOWN:
            lines.append(f"  … and {len(task.denials) - _SHOWN} more (forge task history)")
    return lines
