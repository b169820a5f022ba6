"""The orchestrator's configuration and the pure rules it decides by.

Kept apart from the actor so that each rule can be read and tested on its own: the retry delay,
which failures are retried or charged, which agent may take which task, and how a task's
definition becomes the `TaskSpec` a runtime runs.
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

import msgspec

from actors.breaker import BreakerPolicy
from actors.runtime import TaskSpec, is_transient
from actors.supervisor import HealthPolicy
from events.state import AgentState, TaskState
from events.types import TaskDefinition

__all__ = [
    "BREAKER_FAILURES",
    "OrchestratorConfig",
    "RetryPolicy",
    "agent_fits",
    "build_spec",
    "charged_attempts",
    "is_transient",
    "retried",
    "task_budget_left",
]

BREAKER_FAILURES = frozenset({"api_error", "rate_limited"})
"""Failures of the dependency, not of the task: they count for the circuit breaker, and the
task is requeued without using up an attempt."""

IMMEDIATE_RETRY = frozenset({"lost"})
"""Transient failures retried at once (the attempt was cut short by Forge itself)."""

FREE_RUNTIMES = frozenset({"shell", "noop"})
"""Runtimes that spend nothing: the fleet budget never holds their tasks back."""


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    base_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2

    def delay(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds before the next attempt after `failed_attempts` failures (≥ 1):
        exponential, capped, spread by ±`jitter` so that retries do not arrive in herds."""
        raw = self.base_delay * self.multiplier ** max(0, failed_attempts - 1)
        capped = min(raw, self.max_delay)
        spread = capped * self.jitter
        return max(0.0, min(self.max_delay, capped + rng.uniform(-spread, spread)))


class OrchestratorConfig(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    logs_dir: str
    lease_ttl: float = 10.0  # a node's lease runs out this long after its last renewal
    labels: frozenset[str] | None = None  # None: any task; else only tasks whose tags it has
    max_agents: int = 5
    idle_timeout: float = 300.0
    shutdown_grace: float = 30.0
    default_timeout: float | None = 3600.0
    default_model: str | None = None
    fleet_budget_usd: float | None = None
    snapshot_every: int = 1000
    base_env: dict[str, str] = {}  # the daemon's allow-listed environment, given to every agent
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    health: HealthPolicy = HealthPolicy()
    free_runtimes: frozenset[str] = FREE_RUNTIMES  # not held back by the fleet budget
    # the permission policy of claude tasks whose definition records none (logs from before
    # policies); newer tasks carry the policy in effect when they were submitted
    permission_mode: str | None = None
    allowed_tools: list[str] = []
    disallowed_tools: list[str] = []
    add_dirs: list[str] = []
    # runtime -> the dependency it needs, protected by a circuit breaker of that name
    breakers: dict[str, str] = msgspec.field(default_factory=lambda: {"claude": "model-api"})


def retried(task: TaskState, failure: str | None) -> bool:
    """Whether a failure of this class earns the task another attempt: transient failures
    do, and a failing exit code too when the task says `retry_on_exit`."""
    if failure == "exit" and task.definition.retry_on_exit:
        return True
    return is_transient(failure)  # type: ignore[arg-type]


def task_budget_left(task: TaskState) -> float | None:
    """What the task may still spend across all its attempts (None: no budget)."""
    budget = task.definition.budget_usd
    return None if budget is None else max(0.0, budget - task.cost_usd)


def charged_attempts(task: TaskState) -> int:
    """Attempts that count against `max_attempts`: failures of the dependency do not."""
    return sum(
        1
        for record in task.history
        if record.outcome != "failed" or record.failure not in BREAKER_FAILURES
    )


def agent_fits(agent: AgentState, task: TaskState) -> bool:
    """An agent may run a task of its runtime whose tags it all carries."""
    return agent.runtime == task.definition.runtime and set(task.definition.tags) <= set(agent.tags)


def build_spec(task: TaskState, attempt: int, config: OrchestratorConfig) -> TaskSpec:
    """The runtime's view of one attempt of `task`."""
    definition = task.definition
    log_path = os.path.join(config.logs_dir, task.task_id, f"attempt-{attempt}.log")
    session_id, resume = None, False
    if definition.runtime == "claude":
        resume = task.session_id is not None
        session_id = task.session_id or str(uuid.uuid4())
    return TaskSpec(
        task_id=task.task_id,
        attempt=attempt,
        log_path=log_path,
        command=definition.command,
        prompt=task.follow_up or definition.prompt,  # `forge task continue` sets it
        cwd=definition.cwd,
        env={**config.base_env, **definition.env},
        timeout=definition.timeout if definition.timeout is not None else config.default_timeout,
        model=definition.model or config.default_model,
        budget_usd=task_budget_left(task),
        session_id=session_id,
        resume=resume,
        repo=definition.repo,
        submitted_at=task.submitted_at,
        limits=definition.limits,
        network=definition.network,
        image=definition.image,
        sandbox=definition.sandbox,
        approval_rules=list(task.approval_rules),
        **_permissions(definition, config),
    )


def _permissions(definition: TaskDefinition, config: OrchestratorConfig) -> dict[str, Any]:
    """The claude permission options of a task: as recorded at submit, else the defaults."""
    if definition.runtime != "claude":
        return {}
    source: TaskDefinition | OrchestratorConfig = (
        definition if definition.permission_mode is not None else config
    )
    return {
        "permission_mode": source.permission_mode,
        "allowed_tools": list(source.allowed_tools),
        "disallowed_tools": list(source.disallowed_tools),
        "add_dirs": list(source.add_dirs),
    }
