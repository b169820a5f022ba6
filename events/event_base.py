"""What every event stands on: the `Event` base class, the time and priority types, and the
definition of a task (what to run, as submitted). The catalogue of events is `events.types`,
which re-exports all of these."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

__all__ = ["MAX_TIMESTAMP", "Event", "Limits", "Priority", "TaskDefinition", "Timestamp"]

Priority = Annotated[int, msgspec.Meta(ge=1, le=5)]
"""1 is the highest priority, 5 the lowest."""

MAX_TIMESTAMP = 32_503_680_000.0  # 3000-01-01T00:00:00Z
Timestamp = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_TIMESTAMP)]
"""A wall-clock time in seconds since the epoch. Decoding refuses NaN, infinities and times
before 1970 or after the year 3000, so an entry carrying one is quarantined like any other
undecodable entry: every reader skips it alike and replay stays deterministic."""


class Limits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What one attempt of a task may use, enforced by the kernel (None: no limit)."""

    memory_mb: int | None = None  # resident memory of the attempt's processes, in MiB
    cpus: float | None = None  # CPU share, in cores (0.5: half of one core)
    pids: int | None = None  # processes and threads alive at once


class TaskDefinition(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """What to run: the immutable part of a task, as submitted.

    Its sequences are tuples, and it is not tracked by the cyclic garbage collector (it refers
    to no container that could lead back to it): a queued task costs a few hundred bytes and
    nothing to each collection, however long the queue."""

    runtime: str = "shell"
    command: list[str] | None = None
    prompt: str | None = None
    priority: Priority = 3
    tags: tuple[str, ...] = ()
    after: tuple[str, ...] = ()  # ids of tasks that must complete first
    max_attempts: int = 3
    timeout: float | None = None
    budget_usd: float | None = None
    model: str | None = None
    repo: str | None = None
    cwd: str | None = None
    env: dict[str, str] = {}
    idempotency_key: str | None = None
    name: str | None = None
    retry_on_exit: bool = False  # a failing exit code is retried like a crash (up to max_attempts)
    # claude runtime: the effective permission policy, recorded at submit (never read from the
    # settings later, so a replay or a retry runs under the policy the task was submitted with)
    permission_mode: str | None = None  # None: a log from before policies (the daemon's default)
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    add_dirs: tuple[str, ...] = ()
    # isolation, recorded at submit like the permission policy (the settings' defaults applied
    # then): the sandbox around a process runtime, its network, the kernel-enforced limits, and
    # the image of the container runtime
    sandbox: bool = False
    network: str | None = None  # "on", "off" or "api" (only the model API); None: "on"
    limits: Limits | None = None
    image: str | None = None

    def __post_init__(self) -> None:
        # a list given for a sequence (by a caller's code) is made the tuple a decode makes:
        # equal definitions then compare and encode alike
        for name in _SEQUENCES:
            value = getattr(self, name)
            if value.__class__ is list:
                msgspec.structs.force_setattr(self, name, tuple(value))


_SEQUENCES = ("tags", "after", "allowed_tools", "disallowed_tools", "add_dirs")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every event. `at` is the writer's wall-clock time in seconds."""

    schema: ClassVar[int] = 1
    at: Timestamp
