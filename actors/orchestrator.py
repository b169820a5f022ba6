"""The Orchestrator: owns the fleet-state projection and makes every scheduling decision.

Its state is only ever changed by applying log entries, in log order: after each append it
catches up with the log (reading from its last position), so events written by others (the
CLI's submissions and control requests, the breakers' transitions) and its own interleave
exactly as a replay will see them. Every decision is appended before it is acted on; claims
and completions are conditional appends fenced by attempt and daemon epoch.

Assignment is event-driven: a catch-up that brings a new task, a freed agent, a closed
breaker or a due retry runs `_dispatch` at once — there is no polling interval.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pykka
import structlog

from actors import recovery, reports, terminal
from actors.breaker import CircuitBreaker
from actors.clock import Clock
from actors.messages import (
    AttemptEnded,
    AttemptStarted,
    BreakerVerdict,
    CancelAttempt,
    LogAdvanced,
    NoticeReceived,
    PauseAgent,
    ResumeAgent,
    RunAttempt,
    ShutdownRequested,
    SupervisorFailed,
    Timer,
)
from actors.policy import OrchestratorConfig, agent_fits, build_spec, task_budget_left
from actors.runtime import (
    Outcome,
    RuntimeAdapter,
    Workspaces,
)
from actors.scheduler import Scheduler
from actors.supervisor import AgentSupervisor
from events import types as t
from events.errors import TaskConflict
from events.projection import apply
from events.state import FleetState, TaskState
from events.store import EventStore

__all__ = ["Orchestrator"]

_READ_PAGE = 5000


class Orchestrator(pykka.ThreadingActor):
    def __init__(
        self,
        store: EventStore,
        state: FleetState,
        runtimes: Mapping[str, RuntimeAdapter],
        config: OrchestratorConfig,
        scheduler: Scheduler,
        clock: Clock,
        *,
        checkpoint: Callable[[FleetState], None] | None = None,
        workspaces: Workspaces | None = None,
        stopped: threading.Event | None = None,
        failed: Callable[[BaseException], None] | None = None,
        supervisors: dict[str, pykka.ActorRef[Any]] | None = None,
        breakers: dict[str, pykka.ActorRef[Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.state = state
        self.runtimes = dict(runtimes)
        self.config = config
        self.scheduler = scheduler
        self.clock = clock
        self.checkpoint = checkpoint
        self.workspaces = workspaces
        self.stopped = stopped or threading.Event()
        self.failed = failed
        self.rng = random.Random(seed)
        self.epoch = 0
        # owned by whoever started us (the Fleet), so that it can still reach the supervisors
        # to detach them if this actor dies
        self.supervisors: dict[str, pykka.ActorRef[Any]] = (
            {} if supervisors is None else supervisors
        )
        self.breakers: dict[str, pykka.ActorRef[Any]] = {} if breakers is None else breakers
        self.trials: dict[str, set[str]] = {}  # half-open breaker -> tasks on trial
        self.idle_timers: set[str] = set()  # agents with an idle check pending
        self.stopping = False
        self.stop_reason = "shutdown"
        self.live = False  # false while replaying history: control events are not re-acted
        self.snapshot_at = state.event_count
        self.log: Any = structlog.get_logger("actors.orchestrator")

    # -- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        self.log = self.log.bind(node_id=self.config.node_id)
        self._catch_up()
        self.epoch = self.state.daemon_epoch + 1
        now = self._now()
        started: list[t.Event] = [
            t.DaemonStarted(at=now, node_id=self.config.node_id, epoch=self.epoch, pid=os.getpid())
        ]
        if self.config.fleet_budget_usd != self.state.budget_limit_usd:  # the setting changed
            started.append(t.BudgetLimitSet(at=now, limit_usd=self.config.fleet_budget_usd))
        self._append(started)
        self.live = True
        for name, breaker in self.state.breakers.items():
            self._breaker(name, breaker)
        recovery.recover(self)
        self._dispatch()
        self.log.info("orchestrator started", epoch=self.epoch, tasks=len(self.state.tasks))

    def on_receive(self, message: Any) -> Any:
        match message:
            case LogAdvanced(last_id=last_id, after=after, entries=entries):
                if not last_id:
                    self._catch_up()  # the tail could not tell how far the log goes
                elif _stream_key(last_id) <= _stream_key(self.state.position):
                    pass  # our own appends, applied already
                elif after == self.state.position and entries:
                    for entry_id, event in entries:
                        if _stream_key(entry_id) > _stream_key(self.state.position):
                            self._apply_entry(entry_id, event)  # (else: applied, nested)
                    self._maybe_checkpoint()
                else:
                    self._catch_up()
            case AttemptStarted():
                reports.started(self, message)
            case NoticeReceived():
                reports.notice(self, message)
            case AttemptEnded():
                terminal.ended(self, message)
            case BreakerVerdict(task_id=task_id):
                terminal.requeue_after_verdict(self, task_id)
            case Timer(kind="grace"):
                terminal.force_stop(self)
            case Timer(kind=kind, key=key):
                reports.timer(self, kind, key)
            case ShutdownRequested(grace=grace, reason=reason):
                terminal.shutdown(self, grace, reason)
            case SupervisorFailed(agent_id=agent_id, error=error):
                self._supervisor_lost(agent_id, f"agent supervisor failed: {error}")
            case "state":
                return self.state.copy()
            case "position":
                return self.state.position
            case "counts":
                return self.state.counts()
            case _:
                return super().on_receive(message)
        self._dispatch()
        return None

    def on_failure(self, *args: Any) -> None:
        self.log.error("orchestrator failed", exc_info=args)
        if self.failed is not None:
            self.failed(args[1])
        self.stopped.set()

    # -- the log ----------------------------------------------------------------------------

    def _now(self) -> float:
        return self.clock.now()

    def _append(self, events: Sequence[t.Event]) -> None:
        if events:
            prev, ids = self.store.append_after(events)
            self._absorb(prev, events, ids)

    def _append_if(
        self, task_id: str, expect: dict[str, Any], event: t.Event, *extra: t.Event
    ) -> bool:
        """A conditional append; False (after catching up) when the task has moved on."""
        try:
            prev, ids = self.store.append_if_after(task_id, expect, event, *extra)
        except TaskConflict as conflict:
            self._catch_up()
            if conflict.current is None and self._adopt_into_index(task_id):
                return self._append_if(task_id, expect, event, *extra)
            self.log.info("conditional append refused", task_id=task_id, reason=str(conflict))
            return False
        self._absorb(prev, [event, *extra], ids)
        return True

    def _adopt_into_index(self, task_id: str) -> bool:
        """A task the log knows and the index does not (appended without the append script):
        derive its index entry from the log (which we have just caught up with), once."""
        task = self.state.tasks.get(task_id)
        if task is None or not self.store.adopt_into_index(
            task_id, task.state, task.attempt, task.epoch
        ):
            return False
        self.log.warning("task missing from the index: entry derived from the log", task_id=task_id)
        return True

    def _absorb(self, prev: str, events: Sequence[t.Event], ids: list[str]) -> None:
        """Bring our own appended events into the state: directly when nothing else was
        appended since our position (the log holds exactly what we applied), else by reading."""
        if prev != self.state.position:
            self._catch_up()
            return
        for entry_id, event in zip(ids, events, strict=True):
            self._apply_entry(entry_id, event)
        self._maybe_checkpoint()

    def _catch_up(self) -> None:
        while True:
            entries = self.store.read_from(self.state.position, _READ_PAGE)
            for entry in entries:
                if _stream_key(entry.id) <= _stream_key(self.state.position):
                    continue  # a reaction's own catch-up (nested) has applied it already
                self._apply_entry(entry.id, entry.event)
            if len(entries) < _READ_PAGE:
                break
        self._maybe_checkpoint()

    def _apply_entry(self, entry_id: str, event: t.Event) -> None:
        apply(self.state, event)
        self.state.position = entry_id
        if self.live:
            self._react(event)

    def _maybe_checkpoint(self) -> None:
        if self.checkpoint and self.state.event_count - self.snapshot_at >= (
            self.config.snapshot_every
        ):
            self.snapshot_at = self.state.event_count
            self.checkpoint(self.state)

    def _react(self, event: t.Event) -> None:
        """Act on requests and facts that others appended."""
        match event:
            case t.TaskSubmitted(task_id=task_id, spec=spec) if spec.after:
                task = self.state.tasks.get(task_id)
                doomed = [
                    d
                    for d in spec.after
                    if (dep := self.state.tasks.get(d)) is not None and terminal.doomed(dep)
                ]
                if task is not None and task.state == "pending" and doomed:
                    dep_state = self.state.tasks[doomed[0]].state
                    terminal.fail_now(
                        self, task, "dependency", f"dependency {doomed[0]} {dep_state}"
                    )
            case t.TaskCancelRequested(task_id=task_id):
                terminal.cancel(self, task_id)
            case t.TaskRetryRequested(task_id=task_id):
                task = self.state.tasks.get(task_id)
                if task is not None and task.state in ("failed", "dead_lettered", "cancelled"):
                    self._append(
                        [t.TaskQueued(at=self._now(), task_id=task_id, reason="manual_retry")]
                    )
            case t.AgentSpawnRequested(runtime=runtime, tags=tags):
                if runtime in self.runtimes and self._live_agents() < self.config.max_agents:
                    self._spawn(runtime, list(tags))
            case t.AgentKillRequested(agent_id=agent_id, force=force):
                self._retire(agent_id, "killed on request", grace=0.0 if force else None)
            case t.AgentPauseRequested(agent_id=agent_id):
                self._pause(agent_id, pause=True)
            case t.AgentResumeRequested(agent_id=agent_id):
                self._pause(agent_id, pause=False)
            case t.DaemonStopRequested(force=force):
                grace = 0.0 if force else self.config.shutdown_grace
                self.actor_ref.tell(ShutdownRequested(grace=grace, reason="stop requested"))
            case _:
                pass

    # -- dispatch ---------------------------------------------------------------------------

    def _live_agents(self) -> int:
        return len(self.supervisors)

    def _dispatch(self) -> None:
        if self.stopping:
            return
        spending = self._within_budget()  # else only tasks of free runtimes (shell, noop) start
        skipped: set[str] = set()
        while True:
            idle = [
                a
                for a in self.state.agents.values()
                if a.status in ("ready", "idle") and a.agent_id in self.supervisors
            ]
            if not idle and self._live_agents() >= self.config.max_agents:
                return
            task_id = self.state.next_queued(
                lambda task: (
                    task.task_id not in skipped
                    and (spending or task.definition.runtime in self.config.free_runtimes)
                    and self._runnable(task)
                )
            )
            if task_id is None:
                return
            task = self.state.tasks[task_id]
            if task_budget_left(task) == 0.0:
                spent = f"${task.cost_usd:.4f} of ${task.definition.budget_usd:.4f}"
                terminal.fail_now(self, task, "max_budget", f"task budget spent: {spent}")
                continue
            if task.definition.runtime not in self.runtimes:
                terminal.fail_now(
                    self, task, "invalid", f"unknown runtime {task.definition.runtime!r}"
                )
                continue
            agent = next((a for a in idle if agent_fits(a, task)), None)
            if agent is None:
                if self._live_agents() >= self.config.max_agents:
                    if not idle:
                        return
                    self._retire(idle[0].agent_id, "replaced by an agent that fits a task")
                agent_id = self._spawn(task.definition.runtime, list(task.definition.tags))
            else:
                agent_id = agent.agent_id
            if not self._assign(task, agent_id):
                skipped.add(task_id)

    def _runnable(self, task: TaskState) -> bool:
        name = self.config.breakers.get(task.definition.runtime)
        breaker = self.state.breakers.get(name) if name else None
        if breaker is None or breaker.state == "closed":
            return True
        if breaker.state == "half_open" and name is not None:
            return not self.trials.get(name)  # one trial at a time
        return False

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
            self._append(
                [
                    t.BudgetExhausted(
                        at=self._now(), spent_usd=self.state.total_cost_usd, limit_usd=limit
                    )
                ]
            )
        return False

    def _assign(self, task: TaskState, agent_id: str) -> bool:
        attempt = task.attempt + 1
        now = self._now()
        claimed = self._append_if(
            task.task_id,
            {"state": "queued"},
            t.TaskAssigned(
                at=now,
                task_id=task.task_id,
                attempt=attempt,
                agent_id=agent_id,
                epoch=self.epoch,
                node_id=self.config.node_id,
            ),
            t.AgentBusy(at=now, agent_id=agent_id, task_id=task.task_id, attempt=attempt),
        )
        if not claimed:
            return False
        name = self.config.breakers.get(task.definition.runtime)
        if (
            name
            and self.state.breakers.get(name)
            and self.state.breakers[name].state == "half_open"
        ):
            self.trials.setdefault(name, set()).add(task.task_id)
        spec = build_spec(task, attempt, self.config)
        self.tell_agent(agent_id, RunAttempt(spec=spec, epoch=self.epoch))
        return True

    def _spawn(self, runtime: str, tags: list[str], agent_id: str | None = None) -> str:
        agent_id = agent_id or f"agent-{self.rng.getrandbits(32):08x}"
        now = self._now()
        if agent_id not in self.state.agents:
            self._append(
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
            self.actor_ref,
            self.scheduler,
            self.config.health,
            self.workspaces,
        )
        return agent_id

    def _retire(self, agent_id: str, reason: str, grace: float | None = None) -> None:
        agent = self.state.agents.get(agent_id)
        ref = self.supervisors.get(agent_id)
        if agent is None or ref is None:
            return
        if agent.task_id is not None and agent.attempt is not None:
            kill_grace = self.config.health.kill_grace if grace is None else grace
            self.tell_agent(
                agent_id, CancelAttempt(agent.task_id, agent.attempt, kill_grace, "lost")
            )
            return  # retired when its attempt ends (see terminal.ended)
        del self.supervisors[agent_id]
        ref.stop(block=False)
        self._append([t.AgentTerminated(at=self._now(), agent_id=agent_id, reason=reason)])

    def _pause(self, agent_id: str, *, pause: bool) -> None:
        ref = self.supervisors.get(agent_id)
        agent = self.state.agents.get(agent_id)
        if ref is None or agent is None:
            return
        if not self.tell_agent(agent_id, PauseAgent() if pause else ResumeAgent()):
            return
        event = t.AgentPaused if pause else t.AgentResumed
        self._append([event(at=self._now(), agent_id=agent_id)])

    def tell_agent(self, agent_id: str, message: Any) -> bool:
        """Tell an agent's supervisor; False (and the agent handled as lost) if it has died."""
        ref = self.supervisors.get(agent_id)
        if ref is None:
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            self._supervisor_lost(agent_id, "agent supervisor died")
            return False
        return True

    def _supervisor_lost(self, agent_id: str, reason: str) -> None:
        """An agent's supervisor died: its attempt (stopped by the supervisor's failure hook)
        ends as lost, so the task is retried instead of waiting forever; the agent is gone."""
        if self.supervisors.pop(agent_id, None) is None:
            return
        self.log.error("agent lost", agent_id=agent_id, reason=reason)
        agent = self.state.agents.get(agent_id)
        task = self.state.tasks.get(agent.task_id) if agent and agent.task_id else None
        if task is not None and task.agent_id == agent_id and task.epoch is not None:
            lost = Outcome(ok=False, failure="lost", reason=reason)
            self.actor_ref.tell(
                AttemptEnded(agent_id, task.task_id, task.attempt, task.epoch, lost)
            )
        if agent is not None and agent.status != "terminated":
            self._append([t.AgentTerminated(at=self._now(), agent_id=agent_id, reason=reason)])

    def _breaker(self, name: str, initial: Any = None) -> pykka.ActorRef[Any]:
        ref = self.breakers.get(name)
        if ref is None:
            ref = self.breakers[name] = CircuitBreaker.start(
                name,
                self.store,
                self.scheduler,
                self.clock,
                self.config.breaker,
                initial,
                self.actor_ref,
            )
        return ref


def _stream_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
