"""The Orchestrator: the actor that makes every scheduling decision, one message at a time.

It keeps its copy of the log in a `Ledger` (the fleet state, changed only by applying log
entries in log order; see `actors/ledger.py`) and its agents in an `AgentPool`. Every decision
is appended before it is acted on; claims and completions are conditional appends fenced by
attempt and daemon epoch. What follows an attempt's end lives in `actors/endings.py`, what a
running attempt reports in `actors/attempt_reports.py`, the circuit breakers' side in
`actors/breaker_gate.py` and crash recovery in `actors/recovery.py`; none of them knows this
actor.

Assignment is event-driven: every message handled (the tail reader's news of the log, an
attempt's start or end, a due timer) ends with a dispatch round (`actors/dispatch.py`) — there
is no polling interval. Reports and log news waiting in the mailbox are handled together: the
starts and ends of several attempts, and the claims of a dispatch round for the agents idle
meanwhile, are one conditional append, each record fenced on its own.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pykka
import structlog

from actors import attempt_reports, nodes, recovery
from actors.agents import AgentPool
from actors.breaker_gate import BreakerGate
from actors.clock import Clock
from actors.digests import Digests
from actors.dispatch import Dispatcher
from actors.endings import Endings, doomed
from actors.inbox import Inbox
from actors.ledger import Ledger
from actors.messages import (
    AttemptEnded,
    AttemptStarted,
    BreakerVerdict,
    CancelAttempt,
    LogAdvanced,
    NodeExpired,
    NoticeReceived,
    ShutdownRequested,
    SupervisorFailed,
    Timer,
)
from actors.policy import OrchestratorConfig
from actors.runtime import RuntimeAdapter, Workspaces
from actors.scheduler import Scheduler
from events import types as t
from events.leases import NodeLeases
from events.state import FleetState, TaskState
from events.store import EventStore
from events.task_index import manual_retry

__all__ = ["Orchestrator"]

_MOST_REPORTS = 256  # messages handled in one go


def _batched(message: Any) -> bool:
    return isinstance(message, LogAdvanced | AttemptStarted | AttemptEnded)


def _reported(message: Any) -> bool:
    return isinstance(message, AttemptStarted | AttemptEnded)


# the events that others append and `Orchestrator._react` acts on (keep the two in step)
_REQUESTS = (
    t.TaskCancelRequested,
    t.TaskRetryRequested,
    t.AgentSpawnRequested,
    t.AgentKillRequested,
    t.AgentPauseRequested,
    t.AgentResumeRequested,
    t.DaemonStopRequested,
)


def _reacted(entries: list[tuple[str, Any]]) -> bool:
    """Some of these entries will be acted on (not only applied)."""
    return any(
        isinstance(event, _REQUESTS) or (isinstance(event, t.TaskSubmitted) and event.spec.after)
        for _, event in entries
    )


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
        applied: Callable[[str, str, t.Event, TaskState | None, bool], None] | None = None,
        workspaces: Workspaces | None = None,
        stopped: threading.Event | None = None,
        finished: threading.Event | None = None,
        stopping: threading.Event | None = None,
        failed: Callable[[BaseException], None] | None = None,
        supervisors: dict[str, pykka.ActorRef[Any]] | None = None,
        breakers: dict[str, pykka.ActorRef[Any]] | None = None,
        seed: int | None = None,
        appending: threading.RLock | None = None,
    ) -> None:
        super().__init__()
        self.runtimes = dict(runtimes)
        self.config = config
        self.stopped = stopped or threading.Event()
        self.finished = finished or threading.Event()  # set once the stop is recorded
        self.stop_asked = stopping or threading.Event()  # set when a stop begins
        self.failed = failed
        self.epoch = 0
        self.stop_reason = "shutdown"
        self.log: Any = structlog.get_logger("actors.orchestrator").bind(node_id=config.node_id)
        rng = random.Random(seed)  # agent ids and retry delays, recorded in the log
        self.ledger = Ledger(
            store,
            state,
            clock,
            react=self._react,
            checkpoint=checkpoint,
            applied=applied,
            snapshot_every=config.snapshot_every,
            log=self.log,
            appending=appending,
        )
        self.state = state
        self.digests = Digests()
        self.me = config.node_id
        self.leases = NodeLeases(store.client, store.keys)
        # both dicts are owned by whoever started us (the Fleet), so that it can still reach
        # the supervisors and breakers to stop them if this actor dies
        self.agents = AgentPool(
            self.ledger,
            self.actor_ref,
            self.runtimes,
            config,
            scheduler,
            rng,
            supervisors={} if supervisors is None else supervisors,
            workspaces=workspaces,
            log=self.log,
        )
        self.gate = BreakerGate(
            self.ledger,
            self.actor_ref,
            config,
            scheduler,
            breakers={} if breakers is None else breakers,
        )
        self.endings = Endings(self.ledger, self.agents, self.gate, config, rng)
        self.dispatcher = Dispatcher(
            self.ledger, self.agents, self.gate, self.endings, self.runtimes, config, log=self.log
        )

    @staticmethod
    def _create_actor_inbox() -> Any:
        return Inbox()

    @property
    def stopping(self) -> bool:
        """A shutdown was requested: no new assignments; agents retire as attempts end."""
        return self.agents.draining

    # -- lifecycle ------------------------------------------------------------------------

    def on_start(self) -> None:
        self.ledger.catch_up()
        self.epoch = nodes.start_node(
            self.ledger, self.leases, self.config.node_id, self.config.lease_ttl, os.getpid()
        )
        if self.config.fleet_budget_usd != self.state.budget_limit_usd:  # the setting changed
            limit = self.config.fleet_budget_usd
            self.ledger.append([t.BudgetLimitSet(at=self.ledger.now(), limit_usd=limit)])
        self.ledger.live = True
        self.gate.start_known()
        recovery.recover(self.ledger, self.agents, self.endings, self.runtimes, self.config)
        self._dispatch()
        self.log.info("orchestrator started", epoch=self.epoch, tasks=len(self.state.tasks))

    def on_receive(self, message: Any) -> Any:
        match message:
            case LogAdvanced() | AttemptStarted() | AttemptEnded():
                self._reports(message)
            case NoticeReceived():
                attempt_reports.notice(self.ledger, message)
            case BreakerVerdict(task_id=task_id):
                self.endings.requeue_after_verdict(task_id)
            case Timer(kind="retry", key=task_id):
                self.endings.retry_due(task_id)
            case Timer(kind="idle", key=agent_id):
                self.agents.idle_check_due(agent_id)
            case Timer(kind="grace"):
                self._force_stop()
            case Timer():
                pass
            case ShutdownRequested(grace=grace, reason=reason):
                self._shutdown(grace, reason)
            case NodeExpired(node_id=node_id, epoch=epoch):
                me = self.config.node_id
                nodes.record_lost(self.ledger, self.agents, self.leases, me, node_id, epoch)
            case SupervisorFailed(agent_id=agent_id, error=error):
                self.agents.lost(agent_id, f"agent supervisor failed: {error}")
            case "state":
                return self.state.copy()
            case "position":
                return self.ledger.position
            case "nodes":  # the other running nodes, whose leases the daemon watches
                return [(n.node_id, n.epoch) for n in nodes.others_held(self.state, self.me)]
            case "counts":
                return self.state.counts()
            case "digest":  # the heartbeat's: O(live work), no copy, at most ~1 % of the time
                return self.digests.latest(self.state, self.epoch)
            case "epoch":
                return self.epoch
            case "load":  # (agents alive here, attempts running here, tasks in the hot state)
                return (len(self.agents), len(self._running()), len(self.state.tasks))
            case _:
                return super().on_receive(message)
        self._dispatch()
        return None

    def on_failure(self, *args: Any) -> None:
        self.log.error("orchestrator failed", exc_info=args)
        if self.failed is not None:
            self.failed(args[1])
        self.stopped.set()

    def _react(self, event: t.Event) -> None:
        """Act on requests and facts that others appended (the ledger hands over every event
        it applies once we are live). `_REQUESTS` lists what it acts on."""
        match event:
            case t.TaskSubmitted(task_id=task_id, spec=spec) if spec.after:
                task = self.state.tasks.get(task_id)
                doomed_deps = [
                    d
                    for d in spec.after
                    if ((dep := self.state.tasks.get(d)) is not None and doomed(dep))
                    or self.state.task_state(d) in ("dead_lettered", "cancelled")
                ]
                if task is not None and task.state == "pending" and doomed_deps:
                    dep_state = self.state.task_state(doomed_deps[0])
                    reason = f"dependency {doomed_deps[0]} {dep_state}"
                    self.endings.fail_now(task, "dependency", reason)
            case t.TaskCancelRequested(task_id=task_id):
                self.endings.cancel(task_id)
            case t.TaskRetryRequested(task_id=task_id):
                if self.state.task_state(task_id) in ("failed", "dead_lettered", "cancelled"):
                    self.ledger.append(
                        [manual_retry(self.ledger.store, self.state, task_id, self.ledger.now())]
                    )
            case t.AgentSpawnRequested(runtime=runtime, tags=tags, node_id=node_id):
                if node_id not in (None, self.me):
                    return
                if runtime in self.runtimes and len(self.agents) < self.config.max_agents:
                    self.agents.spawn(runtime, list(tags))
            case t.AgentKillRequested(agent_id=agent_id, force=force):
                self.agents.retire(agent_id, "killed on request", grace=0.0 if force else None)
            case t.AgentPauseRequested(agent_id=agent_id):
                self.agents.pause(agent_id, pause=True)
            case t.AgentResumeRequested(agent_id=agent_id):
                self.agents.pause(agent_id, pause=False)
            case t.DaemonStopRequested(force=force, node_id=node_id) if node_id in (None, self.me):
                grace = 0.0 if force else self.config.shutdown_grace
                self.actor_ref.tell(ShutdownRequested(grace=grace, reason="stop requested"))
            case _:
                pass

    # -- reports and dispatch -------------------------------------------------------------

    def _reports(self, first: Any) -> None:
        """Handle `first` and the run of reports and log news waiting behind it, in order, with
        one append for the starts and ends of each stretch (a task reported twice, or news in
        the log that will be acted on, closes a stretch; other news is applied in passing)."""
        inbox: Inbox = self.actor_inbox  # type: ignore[assignment]
        starts: list[AttemptStarted] = []
        ends: list[AttemptEnded] = []
        for message in [first, *inbox.take_while(_batched, _MOST_REPORTS)]:
            match message:
                case LogAdvanced(last_id=last_id, after=after, entries=entries):
                    if not self.ledger.has_news(last_id):
                        continue
                    inert = after and not self.ledger.has_news(after) and not _reacted(entries)
                    if not inert:  # what others asked is acted on after the reports before it
                        self._record_reports(starts, ends)
                    self.ledger.advance(last_id, after, entries)
                case AttemptStarted(task_id=task_id):
                    if any(m.task_id == task_id for m in starts) or any(
                        m.task_id == task_id for m in ends
                    ):
                        self._record_reports(starts, ends)
                    starts.append(message)
                case AttemptEnded(task_id=task_id):
                    if any(m.task_id == task_id for m in ends):
                        self._record_reports(starts, ends)
                    ends.append(message)
        self._record_reports(starts, ends)

    def _record_reports(self, starts: list[AttemptStarted], ends: list[AttemptEnded]) -> None:
        """Record the attempts' starts and ends in one append, with the claims of a dispatch
        round for the agents idle before them; then act on them."""
        if not starts and not ends:
            return
        planned: list[tuple[TaskState, str]] = []
        if not self.stopping and (not ends or self.config.fleet_budget_usd is None):
            # (with a fleet budget, what the attempts spent counts before the next claims)
            reporting = {m.agent_id for m in starts} | {m.agent_id for m in ends}
            planned = self.dispatcher.plan(busy=reporting)
        begun = attempt_reports.start_records(self.ledger, starts)
        batch = self.endings.prepare(ends)
        claims = self.dispatcher.claims(planned, self.epoch)
        appended = self.ledger.append_if(*begun, *batch.records, *claims)
        ended_at = len(begun)
        claimed_at = ended_at + len(batch.records)
        attempt_reports.refused_starts(self.agents, starts, appended[:ended_at])
        self.endings.settle(batch, appended[ended_at:claimed_at])
        self.dispatcher.hand_over(claims, appended[claimed_at:], self.epoch)
        if ends and self.stopping and not self._running():
            self._finish_stop()
        starts.clear()
        ends.clear()

    def _dispatch(self) -> None:
        if self.stopping:
            return
        inbox: Inbox = self.actor_inbox  # type: ignore[assignment]
        if inbox.waiting(_reported):
            return  # the next report's append carries the claims
        self.dispatcher.run(self.epoch)

    # -- shutdown ---------------------------------------------------------------------------

    def _running(self) -> list[TaskState]:
        return [
            task
            for task in self.state.tasks.values()
            if task.state in ("assigned", "running") and self.agents.has(task.agent_id or "")
        ]

    def _shutdown(self, grace: float, reason: str) -> None:
        first = not self.stopping
        self.stop_asked.set()
        self.agents.draining = True
        self.stop_reason = reason
        if not self._running():
            self._finish_stop()
        elif first and grace > 0:
            running = len(self._running())
            self.log.info("stopping: waiting for running tasks", grace=grace, running=running)
            self.agents.later(grace, Timer(kind="grace"))
        else:
            self._force_stop()

    def _force_stop(self) -> None:
        if self.stopped.is_set():
            return
        kill_grace = self.config.health.kill_grace
        for task in self._running():
            self.agents.tell(
                task.agent_id or "", CancelAttempt(task.task_id, task.attempt, kill_grace, "lost")
            )
        if not self._running():
            self._finish_stop()

    def _finish_stop(self) -> None:
        if self.stopped.is_set():
            return
        now = self.ledger.now()
        events: list[t.Event] = [
            t.AgentTerminated(at=now, agent_id=agent_id, reason="daemon stopped")
            for agent_id in self.agents.ids()
        ]
        events.append(
            t.DaemonStopped(
                at=now, node_id=self.config.node_id, epoch=self.epoch, reason=self.stop_reason
            )
        )
        self.ledger.append(events)
        self.leases.release(self.config.node_id, self.epoch)
        self.agents.stop_all()
        self.gate.stop_all()
        self.ledger.checkpoint()
        self.log.info("orchestrator stopped", epoch=self.epoch)
        self.finished.set()
        self.stopped.set()
