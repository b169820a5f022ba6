"""Dispatch: which queued tasks go to which agents, claimed in one append per round.

A round pairs every idle agent (and, up to the concurrent-agent limit, agents spawned for tasks
no idle agent fits) with the next queued task it may run: priority 1 to 5, FIFO within a
priority, dependencies met, tags, the circuit breakers and the fleet budget. The round's
claims (TaskAssigned with AgentBusy, each fenced on the task still being queued) are one
conditional append; each claimed attempt is then handed to its agent. A refused claim (the
task moved meanwhile) refuses no other; its task is skipped and the next round tries again
with the agents still idle.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from actors.agents import Agents
from actors.breaker_gate import BreakerGate
from actors.endings import Endings
from actors.ledger import Conditional, Ledger
from actors.messages import AttemptEnded, RunAttempt
from actors.policy import OrchestratorConfig, agent_fits, build_spec, task_budget_left
from actors.runtime import Outcome, RuntimeAdapter
from events import types as t
from events.state import AgentState, TaskState

__all__ = ["Dispatcher"]


class Dispatcher:
    def __init__(
        self,
        ledger: Ledger,
        agents: Agents,
        gate: BreakerGate,
        endings: Endings,
        runtimes: Mapping[str, RuntimeAdapter],
        config: OrchestratorConfig,
        *,
        log: Any,
    ) -> None:
        self.ledger = ledger
        self.state = ledger.state
        self.agents = agents
        self.gate = gate
        self.endings = endings
        self.runtimes = runtimes
        self.config = config
        self.log = log

    def run(self, epoch: int) -> None:
        """Assign queued tasks to agents until no agent or no runnable task is left."""
        skipped: set[str] = set()
        while planned := self.plan(skipped=skipped):
            claims = self.claims(planned, epoch)
            self.hand_over(claims, self.ledger.append_if(*claims), epoch, skipped)

    def plan(
        self, busy: Collection[str] = (), skipped: Collection[str] = ()
    ) -> list[tuple[TaskState, str]]:
        """One round: (task, agent id) pairs, the next queued task for each free agent (not
        one of `busy`; no task of `skipped`)."""
        spending = self._within_budget()  # else only tasks of free runtimes (shell, noop) start
        free = [a for a in self._idle() if a.agent_id not in busy]
        labels = self.config.labels  # a node with labels takes only the tasks they cover
        planned: list[tuple[TaskState, str]] = []
        taken: set[str] = set()
        while free or len(self.agents) < self.config.max_agents:
            task_id = self.state.next_queued(
                lambda task: (
                    task.task_id not in skipped
                    and task.task_id not in taken
                    and (spending or task.definition.runtime in self.config.free_runtimes)
                    and (labels is None or labels.issuperset(task.definition.tags))
                    and self.gate.runnable(task)
                )
            )
            if task_id is None:
                break
            task = self.state.tasks[task_id]
            if task_budget_left(task) == 0.0:
                spent = f"${task.cost_usd:.4f} of ${task.definition.budget_usd:.4f}"
                self.endings.fail_now(task, "max_budget", f"task budget spent: {spent}")
                continue
            if task.definition.runtime not in self.runtimes:
                reason = f"unknown runtime {task.definition.runtime!r}"
                self.endings.fail_now(task, "invalid", reason)
                continue
            agent = next((a for a in free if agent_fits(a, task)), None)
            if agent is not None:
                free.remove(agent)
                agent_id = agent.agent_id
            else:
                if len(self.agents) >= self.config.max_agents:
                    if not free:
                        break
                    replaced = free.pop(0).agent_id
                    self.agents.retire(replaced, "replaced by an agent that fits a task")
                agent_id = self.agents.spawn(task.definition.runtime, list(task.definition.tags))
            taken.add(task_id)
            self.gate.admitted(task)  # while its breaker is half-open, the round's one trial
            planned.append((task, agent_id))
        return planned

    def claims(self, planned: Sequence[tuple[TaskState, str]], epoch: int) -> list[Conditional]:
        """The claims of a round (TaskAssigned and AgentBusy, fenced on the task being
        queued), to append in one go, alone or with other records."""
        now = self.ledger.now()
        node_id = self.config.node_id
        records = []
        for task, agent_id in planned:
            attempt = task.attempt + 1
            claim = t.TaskAssigned(
                at=now,
                task_id=task.task_id,
                attempt=attempt,
                agent_id=agent_id,
                epoch=epoch,
                node_id=node_id,
            )
            busy = t.AgentBusy(at=now, agent_id=agent_id, task_id=task.task_id, attempt=attempt)
            records.append(Conditional(task.task_id, {"state": "queued"}, claim, (busy,)))
        return records

    def hand_over(
        self,
        claims: Sequence[Conditional],
        claimed: Sequence[bool],
        epoch: int,
        skipped: set[str] | None = None,
    ) -> None:
        """Start each attempt that was claimed on its agent; a task whose claim was refused
        is added to `skipped`."""
        for claim, ok in zip(claims, claimed, strict=True):
            assigned = claim.event
            assert isinstance(assigned, t.TaskAssigned)
            task_id, agent_id, attempt = assigned.task_id, assigned.agent_id, assigned.attempt
            if not ok:
                self.gate.withdrawn(task_id)
                if skipped is not None:
                    skipped.add(task_id)
                continue
            task = self.state.tasks.get(task_id)
            if task is None or not self.agents.has(agent_id):  # retired while we claimed
                lost = Outcome(ok=False, failure="lost", reason="agent gone before it started")
                self.agents.post(AttemptEnded(agent_id, task_id, attempt, epoch, lost))
                continue
            spec = build_spec(task, attempt, self.config)
            self.agents.tell(agent_id, RunAttempt(spec=spec, epoch=epoch))

    def _idle(self) -> list[AgentState]:
        return [
            a
            for a in self.state.agents.values()
            if a.status in ("ready", "idle") and self.agents.has(a.agent_id)
        ]

    def _within_budget(self) -> bool:
        limit = self.config.fleet_budget_usd
        if limit is None or self.state.total_cost_usd < limit:
            return True
        if not self.state.budget_exhausted:
            self.log.warning(
                "fleet budget reached: no new attempts",
                spent_usd=self.state.total_cost_usd,
                limit_usd=limit,
            )
            spent = self.state.total_cost_usd
            self.ledger.append(
                [t.BudgetExhausted(at=self.ledger.now(), spent_usd=spent, limit_usd=limit)]
            )
        return False
