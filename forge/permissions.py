"""The permission policy of a claude task: what a person asks for (flags, a tasks file) and the
`[claude]` settings, checked and resolved into the values its definition records.

The policy is resolved once, at submit, and stored in the task's definition, so a retry or a
replay runs under the policy the task was submitted with whatever the settings say later.
A task's own value of a field replaces the default of that field (rules are not merged);
`locked` is the one-flag lock-down: Claude Code's `default` mode and no allow rules, so only
read-only tools run and every other call is refused — and recorded (docs/claude.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

import msgspec

from forge.errors import InvalidTask
from forge.settings import PERMISSION_MODES, Settings

__all__ = ["LOCKED_MODE", "Policy", "is_root", "resolve_policy", "split_rules"]

LOCKED_MODE = "dontAsk"
"""The mode of a locked task: Claude Code refuses every call that is not read-only, and asks
nobody (no approval prompt)."""

MAX_RULES = 100
MAX_RULE_CHARS = 1000
_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*(\([^\n]*\))?")


class Policy(msgspec.Struct, frozen=True, kw_only=True):
    """The resolved policy: the definition's fields, and variables the agent needs for it."""

    permission_mode: str | None = None
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    add_dirs: list[str] = []
    env: dict[str, str] = {}


def is_root() -> bool:
    """Whether this process runs as root (Claude Code refuses bypassPermissions then)."""
    return os.geteuid() == 0


def split_rules(values: Iterable[str]) -> list[str]:
    """Rules as typed: each value may hold several, separated by commas outside parentheses
    (`Read,Edit,Bash(git *)`); blanks are dropped."""
    rules: list[str] = []
    for value in values:
        depth, start = 0, 0
        for i, char in enumerate(value):
            if char == "(":
                depth += 1
            elif char == ")":
                depth = max(0, depth - 1)
            elif char == "," and depth == 0:
                rules.append(value[start:i])
                start = i + 1
        rules.append(value[start:])
    return [rule.strip() for rule in rules if rule.strip()]


def _rules(values: Sequence[str] | None, what: str, where: str) -> list[str] | None:
    if values is None:
        return None
    if len(values) > MAX_RULES:
        raise InvalidTask(f"{where}{what} has {len(values)} rules; the limit is {MAX_RULES}")
    rules = split_rules(values)
    for rule in rules:
        shown = rule if len(rule) <= 80 else rule[:77] + "..."
        if len(rule) > MAX_RULE_CHARS or "\0" in rule:
            raise InvalidTask(f"{where}{what}: rule {shown!r} is too long or holds a NUL byte")
        if not _RULE.fullmatch(rule):
            raise InvalidTask(
                f"{where}{what}: {shown!r} is not a tool rule (a tool name, optionally with a "
                "pattern in parentheses: Edit, Bash(git *), mcp__server__tool)"
            )
        inner = rule[rule.find("(") + 1 : -1] if rule.endswith(")") else ""
        if "," in inner:  # claude reads its rule lists comma-separated
            raise InvalidTask(f"{where}{what}: rule {shown!r} cannot hold a comma")
    return list(dict.fromkeys(rules))


def resolve_policy(
    *,
    runtime: str,
    mode: str | None,
    allowed: Sequence[str] | None,
    disallowed: Sequence[str] | None,
    add_dirs: Sequence[str] | None,
    locked: bool,
    settings: Settings,
    where: str = "",
) -> Policy:
    """The effective policy of one task; raises InvalidTask with one line on bad input.

    `None` means "not given" (the settings' default applies); `add_dirs` are already resolved
    directories."""
    given = mode is not None or allowed is not None or disallowed is not None or add_dirs
    if runtime != "claude":
        if given or locked:
            raise InvalidTask(
                f"{where}permission options (mode, tool rules, add_dirs, locked) apply to claude "
                "tasks only"
            )
        return Policy()
    if mode is not None and mode not in PERMISSION_MODES:
        raise InvalidTask(
            f"{where}unknown permission mode {mode[:80]!r} (known: {', '.join(PERMISSION_MODES)})"
        )
    allow = _rules(allowed, "allowed_tools", where)
    deny = _rules(disallowed, "disallowed_tools", where)
    claude = settings.claude
    if locked:
        if (mode is not None and mode != LOCKED_MODE) or allow or add_dirs:
            raise InvalidTask(
                f"{where}locked cannot be combined with a permission mode, allow rules or "
                "add_dirs (it refuses every call that is not read-only)"
            )
        return Policy(permission_mode=LOCKED_MODE, disallowed_tools=deny or [])
    effective = mode or claude.permission_mode
    env: dict[str, str] = {}
    if effective == "bypassPermissions":
        if claude.sandbox:
            env["IS_SANDBOX"] = "1"
        elif is_root():
            raise InvalidTask(
                f"{where}bypassPermissions: Claude Code refuses it when run as root; set "
                "claude.sandbox = true (FORGE_CLAUDE_SANDBOX=1) if this machine is a disposable "
                "sandbox, or use acceptEdits"
            )
    return Policy(
        permission_mode=effective,
        allowed_tools=allow if allow is not None else list(claude.allowed_tools),
        disallowed_tools=deny if deny is not None else list(claude.disallowed_tools),
        add_dirs=list(add_dirs) if add_dirs else list(claude.add_dirs),
        env=env,
    )
