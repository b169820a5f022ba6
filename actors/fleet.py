"""A running fleet: the orchestrator, its timer thread and its tail reader, wired together.

`Fleet.start()` rebuilds the state from the log (newest usable snapshot plus the tail), starts
the orchestrator, which records a new daemon epoch and recovers what an earlier daemon left,
and begins tailing the log. `Fleet.stop()` is the graceful shutdown: no new assignments,
running tasks get `grace` seconds, then agents are stopped and a snapshot is written.

When the orchestrator dies (an unexpected error, or the log unreachable for longer than the
client's timeout), `failure` says why and `detach()` tears the fleet down without touching the
agents' processes, so that a new Fleet started on the same log re-adopts them: that is how the
daemon restarts the orchestrator from the log.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any, cast

import pykka

from actors.clock import Clock, SystemClock
from actors.messages import DetachAgent, FenceAgent, ShutdownRequested
from actors.orchestrator import Orchestrator
from actors.policy import OrchestratorConfig
from actors.runtime import RuntimeAdapter, Workspaces
from actors.scheduler import Scheduler
from actors.tail import LogTail
from events.errors import LeaseLost
from events.replay import ReplayReport, replay
from events.snapshot import SnapshotStore
from events.state import FleetState
from events.store import EventStore
from events.task_index import TaskIndex
from events.task_indexer import TaskIndexer

__all__ = ["Fleet"]

_ASK_TIMEOUT = 30.0


class Fleet:
    def __init__(
        self,
        store: EventStore,
        runtimes: Mapping[str, RuntimeAdapter],
        config: OrchestratorConfig,
        clock: Clock | None = None,
        seed: int | None = None,
        workspaces: Workspaces | None = None,
    ) -> None:
        self.store = store
        self.runtimes = runtimes
        self.config = config
        self.clock = clock or SystemClock()
        self.seed = seed
        self.workspaces = workspaces
        self.snapshots = SnapshotStore(store)
        self._index = TaskIndex(store)
        self._indexer = TaskIndexer(self._index)
        self.stopped = threading.Event()  # the orchestrator stopped: its stop, or a failure
        self.finished = threading.Event()  # it recorded its stop (`daemon.stopped`)
        self.stopping = threading.Event()  # a stop began (it may fail before it is recorded)
        self.scheduler: Scheduler | None = None
        self.tail: LogTail | None = None
        self.orchestrator: pykka.ActorRef[Any] | None = None
        self.report: ReplayReport | None = None
        self.failure: BaseException | None = None
        self.epoch: int | None = None  # this node's epoch, once started
        # the orchestrator's children, held here so that they can be detached if it dies
        self.supervisors: dict[str, pykka.ActorRef[Any]] = {}
        self.breakers: dict[str, pykka.ActorRef[Any]] = {}
        # held by the orchestrator's ledger while it appends: the tail reader waits for it
        self._appending = threading.RLock()

    def start(self) -> Fleet:
        state, self.report = replay(self.store, snapshots=self.snapshots)
        self.scheduler = Scheduler()
        self.orchestrator = Orchestrator.start(
            self.store,
            state,
            self.runtimes,
            self.config,
            self.scheduler,
            self.clock,
            checkpoint=self._checkpoint,
            applied=self._indexer.feed,
            stopped=self.stopped,
            finished=self.finished,
            stopping=self.stopping,
            failed=self._failed,
            supervisors=self.supervisors,
            breakers=self.breakers,
            seed=self.seed,
            workspaces=self.workspaces,
            appending=self._appending,
        )
        position = cast(str, self.orchestrator.ask("position", timeout=_ASK_TIMEOUT))
        self.epoch = cast(int, self.orchestrator.ask("epoch", timeout=_ASK_TIMEOUT))
        self.tail = LogTail(
            self.store, self.orchestrator, position, applied=lambda: self._settled(state)
        )
        self.tail.start()
        return self

    def _checkpoint(self, state: FleetState) -> None:
        self.snapshots.save(state)
        self._indexer.poke()

    def _settled(self, state: FleetState) -> str:
        """How far the orchestrator has applied the log, once its append under way (if any)
        is back: the entries that append brings back are not news for the tail reader."""
        with self._appending:
            return state.position

    def flush_index(self, timeout: float) -> bool:
        """Have the task indexer index the entries the orchestrator has applied, waiting up to
        `timeout` seconds for it (`TaskIndexer.flush`); True if it holds none now."""
        return self._indexer.flush(timeout)

    def _failed(self, error: BaseException) -> None:
        self.failure = error

    def alive(self) -> bool:
        """The orchestrator and the tail reader both still run."""
        return (
            self.orchestrator is not None
            and self.orchestrator.is_alive()
            and self.tail is not None
            and self.tail.alive()
        )

    def state(self) -> FleetState:
        """A copy of the orchestrator's live state, with the finished tasks read back into
        `tasks` through the per-task index (O(history): for tests and `forge run`'s result;
        the daemon's heartbeat uses `digest`)."""
        return self._index.full_state(self.hot_state())

    def hot_state(self) -> FleetState:
        """A copy of the orchestrator's live state (finished tasks only in `finished`)."""
        assert self.orchestrator is not None
        return cast(FleetState, self.orchestrator.ask("state", timeout=_ASK_TIMEOUT))

    def digest(self) -> tuple[int, str, int, str]:
        """(epoch, position, event count, `FleetState.hot_digest`) of the live state, computed
        by the orchestrator in O(live work): the heartbeat's figures."""
        assert self.orchestrator is not None
        reply = self.orchestrator.ask("digest", timeout=_ASK_TIMEOUT)
        return cast(tuple[int, str, int, str], reply)

    def load(self) -> tuple[int, int, int]:
        """(agents alive on this node, attempts running on it, tasks in the hot state)."""
        assert self.orchestrator is not None
        return cast(tuple[int, int, int], self.orchestrator.ask("load", timeout=_ASK_TIMEOUT))

    def fence(self, reason: str) -> None:
        """This node lost its lease: kill every attempt's processes at once (other nodes may
        run them again) and fail, so that the daemon starts a new fleet on a new epoch."""
        for ref in list(self.supervisors.values()):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(FenceAgent())
        if self.failure is None:
            self.failure = LeaseLost(reason)

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state (cheap: no copy of the state)."""
        assert self.orchestrator is not None
        return cast(dict[str, int], self.orchestrator.ask("counts", timeout=_ASK_TIMEOUT))

    def stop(self, grace: float | None = None, timeout: float = 60.0) -> bool:
        """Graceful shutdown; True if everything stopped within `timeout` seconds."""
        if self.orchestrator is not None and self.orchestrator.is_alive():
            wait = self.config.shutdown_grace if grace is None else grace
            self.orchestrator.tell(ShutdownRequested(grace=wait, reason="shutdown"))
            self.stopped.wait(timeout)
        return self.close()

    def detach(self) -> None:
        """Tear down after a failure, leaving every attempt's processes running (a new Fleet on
        the same log re-adopts them)."""
        if self.tail is not None:
            self.tail.stop()
        for ref in list(self.supervisors.values()):
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(DetachAgent())
            ref.stop(block=True, timeout=_ASK_TIMEOUT)
        self.supervisors.clear()
        if self.orchestrator is not None and self.orchestrator.is_alive():
            self.orchestrator.stop(block=True, timeout=_ASK_TIMEOUT)
        for ref in list(self.breakers.values()):
            ref.stop(block=False)
        self.breakers.clear()
        if self.scheduler is not None:
            self.scheduler.stop()
        for runtime in self.runtimes.values():
            runtime.cleanup()

    def close(self) -> bool:
        """Stop the threads and actors without the graceful steps (after `stop`, or a crash)."""
        done = self.stopped.is_set()
        if self.tail is not None:
            self.tail.stop()
        if self.orchestrator is not None and self.orchestrator.is_alive():
            self.orchestrator.stop(block=True, timeout=_ASK_TIMEOUT)
        if self.scheduler is not None:
            self.scheduler.stop()
        for runtime in self.runtimes.values():
            runtime.cleanup()
        return done
