"""Forge's actors: the Orchestrator, one AgentSupervisor per agent and one CircuitBreaker per
protected dependency (Pykka actors exchanging msgspec messages), and the runtime adapter
protocol they drive. `actors` imports `events`, never `forge`.
"""

from __future__ import annotations

from actors.breaker import BreakerPolicy, CircuitBreaker
from actors.clock import Clock, SystemClock
from actors.fleet import Fleet
from actors.orchestrator import Orchestrator
from actors.policy import OrchestratorConfig, RetryPolicy
from actors.runtime import (
    FailureClass,
    Health,
    Notice,
    Outcome,
    OutputLine,
    ProgressNotice,
    ResourceUsage,
    RunHandle,
    RuntimeAdapter,
    SessionNotice,
    TaskSpec,
    UsageNotice,
    is_transient,
)
from actors.scheduler import Scheduler
from actors.supervisor import AgentSupervisor, HealthPolicy

__all__ = [
    "AgentSupervisor",
    "BreakerPolicy",
    "CircuitBreaker",
    "Clock",
    "FailureClass",
    "Fleet",
    "Health",
    "HealthPolicy",
    "Notice",
    "Orchestrator",
    "OrchestratorConfig",
    "Outcome",
    "OutputLine",
    "ProgressNotice",
    "ResourceUsage",
    "RetryPolicy",
    "RunHandle",
    "RuntimeAdapter",
    "Scheduler",
    "SessionNotice",
    "SystemClock",
    "TaskSpec",
    "UsageNotice",
    "is_transient",
]
