"""Typed messages the actors exchange (msgspec Structs, dispatched with `match`)."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.runtime import Notice, Outcome, TaskSpec

__all__ = [
    "AdoptAttempt",
    "AttemptEnded",
    "AttemptStarted",
    "BreakerFailure",
    "BreakerSuccess",
    "BreakerVerdict",
    "CancelAttempt",
    "DetachAgent",
    "FenceAgent",
    "HealthTick",
    "LogAdvanced",
    "NodeExpired",
    "NoticeReceived",
    "PauseAgent",
    "ResumeAgent",
    "RunAttempt",
    "ShutdownRequested",
    "SupervisorFailed",
    "Timer",
]


class LogAdvanced(msgspec.Struct, frozen=True):
    """The tail reader saw new entries in the log: catch up and dispatch.

    `entries` (stream id, event) are the decoded entries that followed `after`; the
    orchestrator applies them directly when `after` is its own position, else it reads."""

    last_id: str
    after: str = ""
    entries: list[tuple[str, Any]] = []


class Timer(msgspec.Struct, frozen=True):
    """A scheduled wake-up: `kind` says what for, `key` for whom."""

    kind: str  # "retry" | "idle" | "breaker" | "dispatch" | "grace"
    key: str = ""


class ShutdownRequested(msgspec.Struct, frozen=True):
    """Stop assigning; let running tasks finish within `grace` seconds (0: stop them now)."""

    grace: float
    reason: str = "shutdown"


# -- orchestrator -> supervisor --------------------------------------------------------------


class RunAttempt(msgspec.Struct, frozen=True):
    spec: TaskSpec
    epoch: int


class AdoptAttempt(msgspec.Struct, frozen=True):
    spec: TaskSpec
    epoch: int
    pid: int
    create_time: float


class CancelAttempt(msgspec.Struct, frozen=True):
    task_id: str
    attempt: int
    grace: float
    failure: str = "cancelled"


class PauseAgent(msgspec.Struct, frozen=True):
    pass


class ResumeAgent(msgspec.Struct, frozen=True):
    pass


class HealthTick(msgspec.Struct, frozen=True):
    attempt: int


# -- supervisor -> orchestrator --------------------------------------------------------------


class AttemptStarted(msgspec.Struct, frozen=True):
    agent_id: str
    task_id: str
    attempt: int
    epoch: int
    pid: int
    create_time: float
    log_path: str
    session_id: str | None = None
    workspace: str | None = None
    branch: str | None = None
    at: float | None = None  # when the runtime had started it (the supervisor's clock)


class NoticeReceived(msgspec.Struct, frozen=True):
    agent_id: str
    task_id: str
    attempt: int
    notice: Notice


class AttemptEnded(msgspec.Struct, frozen=True):
    agent_id: str
    task_id: str
    attempt: int
    epoch: int
    outcome: Outcome


class SupervisorFailed(msgspec.Struct, frozen=True):
    """An agent's supervisor died of an unexpected error; its attempt (if any) was stopped."""

    agent_id: str
    error: str


class DetachAgent(msgspec.Struct, frozen=True):
    """Stop following the attempt without touching its processes (the orchestrator is being
    restarted from the log, and the next one re-adopts the attempt)."""


class FenceAgent(msgspec.Struct, frozen=True):
    """Kill the attempt's processes at once and stop following it, reporting nothing: this
    node lost its lease (it could not renew it), so other nodes may run the attempt again."""


class NodeExpired(msgspec.Struct, frozen=True):
    """Another node's lease was found gone: record the node lost and requeue its attempts."""

    node_id: str
    epoch: int


# -- breaker ----------------------------------------------------------------------------------


class BreakerFailure(msgspec.Struct, frozen=True):
    reason: str
    reset_at: float | None = None
    task_id: str | None = None  # answered with a BreakerVerdict once the failure is recorded


class BreakerVerdict(msgspec.Struct, frozen=True):
    """The breaker has recorded a task's failure (and appended any transition it caused)."""

    task_id: str


class BreakerSuccess(msgspec.Struct, frozen=True):
    pass
