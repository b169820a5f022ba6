"""Errors of the upper layer, on the one tree rooted at `ForgeError` (defined in `events`)."""

from __future__ import annotations

from events.errors import AppendConflict, ForgeError, StoreError, StoreUnavailable

__all__ = [
    "AppendConflict",
    "ConfigError",
    "DaemonError",
    "ForgeError",
    "InvalidTask",
    "NotFound",
    "ServerError",
    "ServerNotAnswering",
    "StoreError",
    "StoreUnavailable",
]


class ConfigError(ForgeError):
    """Raised when the settings file, a FORGE_* variable or a flag holds an invalid value."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        first = problems[0] if problems else "unknown problem"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"invalid configuration{where}: {first}{more}")


class ServerError(ForgeError):
    """Raised when the embedded Redis-compatible server cannot be found, started or stopped."""


class ServerNotAnswering(ServerError, StoreUnavailable):
    """Raised when the embedded server's process is alive but does not answer (stopped, hung)."""


class NotFound(ForgeError):
    """Raised when a task, agent or other named thing does not exist."""


class InvalidTask(ForgeError):
    """Raised when a task to submit (flags or a tasks file) is invalid; nothing is appended."""


class DaemonError(ForgeError):
    """Raised when the daemon cannot be started or stopped, or none runs to act on a request."""
