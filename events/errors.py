"""The exception tree shared by every Forge package.

`ForgeError` lives in the lowest layer (`events`) so that the log, the actors and the CLI all
raise from one root; `forge.errors` re-exports it and adds the errors of the upper layers. The
CLI turns any `ForgeError` into one line on stderr and exit code 1.
"""

from __future__ import annotations

__all__ = [
    "AppendConflict",
    "ForgeError",
    "LeaseLost",
    "StoreError",
    "StoreUnavailable",
    "TaskConflict",
    "UndecodableEvent",
]


class ForgeError(Exception):
    """Raised when Forge refuses or fails an operation for a reason a user should read."""


class StoreError(ForgeError):
    """Raised when the event log cannot be read or written."""


class StoreUnavailable(StoreError):
    """Raised when the Redis server behind the event log cannot be reached."""


class LeaseLost(StoreUnavailable):
    """Raised when a node could not keep its lease: its epoch is over, and it starts again on
    a new one once the log answers."""


class AppendConflict(StoreError):
    """Raised when a conditional append finds that the state it was checked against has moved."""


class TaskConflict(AppendConflict):
    """Raised when a conditional append finds a task's index entry not as the writer expected."""

    def __init__(
        self, task_id: str, expected: dict[str, object], current: dict[str, object] | None
    ) -> None:
        self.task_id = task_id
        self.expected = expected
        self.current = current  # the task's index entry (state, attempt, epoch), None if unknown
        super().__init__(f"task {task_id!r}: expected {expected}, found {current}")


class UndecodableEvent(StoreError):
    """Raised when a log entry cannot be decoded into a known event."""
