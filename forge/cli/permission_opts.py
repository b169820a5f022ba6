"""The permission options of claude tasks, shared by `forge task submit` and `forge run`.

The values are passed on as typed; `forge.permissions` checks them (one clear line for an
unknown mode or a malformed rule) and resolves them against the `[claude]` settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["PERMISSION_FLAGS", "permission_fields", "permission_options"]

F = TypeVar("F", bound=Callable[..., Any])

PERMISSION_FLAGS = ("permission_mode", "allow_tool", "deny_tool", "add_dir", "locked")
"""The keyword names the options add to a command's parameters."""


def permission_options(func: F) -> F:
    """Add --permission-mode, --allow-tool, --deny-tool, --add-dir and --locked."""
    options = [
        click.option(
            "--permission-mode",
            metavar="MODE",
            help="Claude Code permission mode: default, acceptEdits, plan, bypassPermissions "
            "or dontAsk (default: claude.permission_mode, acceptEdits).",
        ),
        click.option(
            "--allow-tool",
            multiple=True,
            metavar="RULE",
            help="Allow a tool rule without asking, e.g. Edit, 'Bash(make *)', mcp__srv__tool "
            "(repeatable; replaces claude.allowed_tools).",
        ),
        click.option(
            "--deny-tool",
            multiple=True,
            metavar="RULE",
            help="Always refuse a tool rule, e.g. 'Bash(git push *)' (repeatable; replaces "
            "claude.disallowed_tools).",
        ),
        click.option(
            "--add-dir",
            multiple=True,
            metavar="DIR",
            help="Another directory the agent's tools may use (repeatable).",
        ),
        click.option(
            "--locked",
            is_flag=True,
            default=None,
            help="Lock the agent down: default mode, no allow rules; only read-only tools run, "
            "every other call is refused and recorded.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def permission_fields(flags: dict[str, Any]) -> dict[str, Any]:
    """The `TaskRequest` fields of the permission options in `flags` (popped from it); an
    option not given stays None, so the settings' default applies."""
    allow = flags.pop("allow_tool", ())
    deny = flags.pop("deny_tool", ())
    dirs = flags.pop("add_dir", ())
    return {
        "permission_mode": flags.pop("permission_mode", None),
        "allowed_tools": list(allow) if allow else None,
        "disallowed_tools": list(deny) if deny else None,
        "add_dirs": list(dirs) if dirs else None,
        "locked": flags.pop("locked", None),
    }
