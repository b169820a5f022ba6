"""The orchestrator's agents: one AgentSupervisor actor per agent, started, told, paused and
retired here, each decision appended to the ledger before it is acted on.

`Agents` is the narrow interface that the code deciding how tasks end, what attempts report
and how a restart recovers (`endings`, `attempt_reports`, `recovery`) needs; `AgentPool` is
the orchestrator's implementation. Timers and messages for the orchestrator itself go through
it too, so that those modules hold no reference to the actor.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Protocol

import pykka
import structlog

from actors.ledger import Ledger
from actors.messages import AttemptEnded, CancelAttempt, PauseAgent, ResumeAgent, Timer
from actors.policy import OrchestratorConfig
from actors.runtime import Outcome, RuntimeAdapter, Workspaces
from actors.scheduler import Scheduler, Teller
from actors.supervisor import AgentSupervisor
from events import types as t

__all__ = ["AgentPool", "Agents"]


class Agents(Protocol):
    def __len__(self) -> int:
        """How many agents have a live supervisor."""
        ...

    def has(self, agent_id: str) -> bool:
        """The agent has a live supervisor."""
        ...

    def tell(self, agent_id: str, message: Any) -> bool:
        """Tell the agent's supervisor; False (and the agent handled as lost) if it is gone."""
        ...

    def spawn(self, runtime: str, tags: list[str], agent_id: str | None = None) -> str:
        """Start an agent (recorded unless the log knows it already); returns its id."""
        ...

    def retire(self, agent_id: str, reason: str, grace: float | None = None) -> None:
        """Stop an agent (one running an attempt once that attempt has been stopped)."""
        ...

    def release(self, agent_id: str, failure: str | None) -> None:
        """The agent's attempt is over: keep it idle, or retire it after a failure that
        leaves it unusable or while the fleet is stopping."""
        ...

    def later(self, delay: float, message: Any) -> None:
        """Deliver `message` to the orchestrator after `delay` seconds."""
        ...

    def post(self, message: Any) -> None:
        """Deliver `message` to the orchestrator after the message it is handling."""
        ...


class AgentPool:
    def __init__(
        self,
        ledger: Ledger,
        owner: Teller,
        runtimes: Mapping[str, RuntimeAdapter],
        config: OrchestratorConfig,
        scheduler: Scheduler,
        rng: random.Random,
        *,
        supervisors: dict[str, pykka.ActorRef[Any]],
        workspaces: Workspaces | None = None,
        log: Any = None,
    ) -> None:
        self.ledger = ledger
        self.owner = owner  # the orchestrator: supervisors report to it, timers wake it
        self.runtimes = runtimes
        self.config = config
        self.scheduler = scheduler
        self.rng = rng
        # owned by whoever started the orchestrator (the Fleet), so that it can still reach
        # the supervisors to detach them if the orchestrator dies
        self.supervisors = supervisors
        self.workspaces = workspaces
        self.draining = False  # the fleet is stopping: agents are retired as attempts end
        self.idle_checks: set[str] = set()  # agents with an idle check pending
        self.log: Any = log if log is not None else structlog.get_logger("actors.agents")

    def __len__(self) -> int:
        return len(self.supervisors)

    def ids(self) -> list[str]:
        return list(self.supervisors)

    def has(self, agent_id: str) -> bool:
        return agent_id in self.supervisors

    def later(self, delay: float, message: Any) -> None:
        self.scheduler.after(delay, self.owner, message)

    def post(self, message: Any) -> None:
        self.owner.tell(message)

    def tell(self, agent_id: str, message: Any) -> bool:
        ref = self.supervisors.get(agent_id)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            self.lost(agent_id, "agent supervisor died")
            return False
        return True

    def spawn(self, runtime: str, tags: list[str], agent_id: str | None = None) -> str:
        while agent_id is None:
            drawn = f"agent-{self.rng.getrandbits(32):08x}"  # an id no agent had, on any node
            agent_id = None if drawn in self.ledger.state.agents else drawn
        now = self.ledger.now()
        if agent_id not in self.ledger.state.agents:
            self.ledger.append(
                [
                    t.AgentSpawned(
                        at=now,
                        agent_id=agent_id,
                        runtime=runtime,
                        tags=tags,
                        node_id=self.config.node_id,
                    ),
                    t.AgentReady(at=now, agent_id=agent_id),
                ]
            )
        self.supervisors[agent_id] = AgentSupervisor.start(
            agent_id,
            self.runtimes[runtime],
            self.owner,
            self.scheduler,
            self.config.health,
            self.workspaces,
            self.ledger.clock,
        )
        return agent_id

    def retire(self, agent_id: str, reason: str, grace: float | None = None) -> None:
        """Stop an agent; one with an attempt running has it stopped (as lost) first, and is
        retired when that attempt ends."""
        agent = self.ledger.state.agents.get(agent_id)
        ref = self.supervisors.get(agent_id)
        if agent is None or ref is None:
            return
        if agent.task_id is not None and agent.attempt is not None:
            kill_grace = self.config.health.kill_grace if grace is None else grace
            self.tell(agent_id, CancelAttempt(agent.task_id, agent.attempt, kill_grace, "lost"))
            return  # retired when its attempt ends (see release)
        del self.supervisors[agent_id]
        ref.stop(block=False)
        self.ledger.append(
            [t.AgentTerminated(at=self.ledger.now(), agent_id=agent_id, reason=reason)]
        )

    def pause(self, agent_id: str, *, pause: bool) -> None:
        agent = self.ledger.state.agents.get(agent_id)
        if agent_id not in self.supervisors or agent is None:
            return
        if not self.tell(agent_id, PauseAgent() if pause else ResumeAgent()):
            return
        event = t.AgentPaused if pause else t.AgentResumed
        self.ledger.append([event(at=self.ledger.now(), agent_id=agent_id)])

    def lost(self, agent_id: str, reason: str) -> None:
        """An agent's supervisor died: its attempt (stopped by the supervisor's failure hook)
        ends as lost, so the task is retried instead of waiting forever; the agent is gone."""
        if self.supervisors.pop(agent_id, None) is None:
            return
        self.log.error("agent lost", agent_id=agent_id, reason=reason)
        state = self.ledger.state
        agent = state.agents.get(agent_id)
        task = state.tasks.get(agent.task_id) if agent and agent.task_id else None
        if task is not None and task.agent_id == agent_id and task.epoch is not None:
            lost = Outcome(ok=False, failure="lost", reason=reason)
            self.post(AttemptEnded(agent_id, task.task_id, task.attempt, task.epoch, lost))
        if agent is not None and agent.status != "terminated":
            self.ledger.append(
                [t.AgentTerminated(at=self.ledger.now(), agent_id=agent_id, reason=reason)]
            )

    # -- idle agents --------------------------------------------------------------------

    def release(self, agent_id: str, failure: str | None) -> None:
        if self.draining or failure in ("unhealthy", "lost"):
            self.retire(agent_id, "stopped with its attempt")
        elif agent_id not in self.idle_checks:  # one pending idle check per agent is enough
            self.idle_checks.add(agent_id)
            self.later(self.config.idle_timeout, Timer(kind="idle", key=agent_id))

    def idle_check_due(self, agent_id: str) -> None:
        """Retire the agent if it has been idle for `idle_timeout`."""
        self.idle_checks.discard(agent_id)
        agent = self.ledger.state.agents.get(agent_id)
        if agent is None or agent.status != "idle" or agent_id not in self.supervisors:
            return  # busy again (a new check starts when it is next idle) or gone
        left = agent.updated_at + self.config.idle_timeout - self.ledger.now()
        if left <= 1e-3:
            self.retire(agent_id, "idle")
        else:  # it worked since this check was set: check again when it may be due
            self.idle_checks.add(agent_id)
            self.later(left, Timer(kind="idle", key=agent_id))

    def stop_all(self) -> None:
        for ref in list(self.supervisors.values()):
            ref.stop(block=False)
        self.supervisors.clear()
