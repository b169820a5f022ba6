"""The orchestrator's side of the circuit breakers: which tasks may start while a breaker is
not closed, and what each attempt's end tells the breaker of its runtime's dependency.

One CircuitBreaker actor per protected dependency (started on first use, or at startup for
those the log knows); it appends its own transitions. While a breaker is half-open one task at
a time runs as its trial; a failed trial keeps its slot until the breaker's verdict is in the
log, so a second task cannot start before the breaker has reopened.
"""

from __future__ import annotations

from typing import Any

import pykka

from actors.breaker import CircuitBreaker
from actors.ledger import Ledger
from actors.messages import BreakerFailure, BreakerSuccess
from actors.policy import BREAKER_FAILURES, OrchestratorConfig
from actors.scheduler import Scheduler, Teller
from events.state import TaskState

__all__ = ["BreakerGate"]


class BreakerGate:
    def __init__(
        self,
        ledger: Ledger,
        owner: Teller,
        config: OrchestratorConfig,
        scheduler: Scheduler,
        *,
        breakers: dict[str, pykka.ActorRef[Any]],
    ) -> None:
        self.ledger = ledger
        self.owner = owner  # the orchestrator: breakers answer it with their verdicts
        self.config = config
        self.scheduler = scheduler
        self.breakers = breakers  # owned by the Fleet, which stops them if we die
        self.trials: dict[str, set[str]] = {}  # half-open breaker -> tasks on trial

    def start_known(self) -> None:
        """Start a breaker actor for every breaker the log knows (they resume its state)."""
        for name, breaker in self.ledger.state.breakers.items():
            self._breaker(name, breaker)

    def runnable(self, task: TaskState) -> bool:
        """The task's breaker (if any) lets it start now."""
        name = self.config.breakers.get(task.definition.runtime)
        breaker = self.ledger.state.breakers.get(name) if name else None
        if breaker is None or breaker.state == "closed":
            return True
        if breaker.state == "half_open" and name is not None:
            return not self.trials.get(name)  # one trial at a time
        return False

    def admitted(self, task: TaskState) -> None:
        """The task is being claimed: while its breaker is half-open it runs as the trial."""
        name = self.config.breakers.get(task.definition.runtime)
        breaker = self.ledger.state.breakers.get(name) if name else None
        if name and breaker and breaker.state == "half_open":
            self.trials.setdefault(name, set()).add(task.task_id)

    def withdrawn(self, task_id: str) -> None:
        """The task's claim was refused after it was admitted: its trial slot is free."""
        for trials in self.trials.values():
            trials.discard(task_id)

    def guards(self, task: TaskState) -> bool:
        """A breaker judges the task's dependency failures (else they are requeued at once)."""
        return bool(self.config.breakers.get(task.definition.runtime))

    def report(
        self, task: TaskState, failure: str | None, reason: str, reset_at: float | None
    ) -> None:
        """Tell the task's breaker how its attempt ended; a dependency failure is answered
        with a BreakerVerdict once recorded."""
        name = self.config.breakers.get(task.definition.runtime)
        if not name:
            return
        if failure in BREAKER_FAILURES:
            # a failed trial keeps its slot until the breaker's verdict (`verdict`):
            # freed now, a second task could start before the breaker has reopened
            self._breaker(name).tell(
                BreakerFailure(reason=reason, reset_at=reset_at, task_id=task.task_id)
            )
        else:
            self.trials.get(name, set()).discard(task.task_id)
            self._breaker(name).tell(BreakerSuccess())

    def verdict(self, task_id: str) -> None:
        """The task's failure is in the log with the breaker's verdict: its trial slot is free."""
        for trials in self.trials.values():
            trials.discard(task_id)

    def stop_all(self) -> None:
        for ref in list(self.breakers.values()):
            ref.stop(block=False)

    def _breaker(self, name: str, initial: Any = None) -> pykka.ActorRef[Any]:
        ref = self.breakers.get(name)
        if ref is None:
            ref = self.breakers[name] = CircuitBreaker.start(
                name,
                self.ledger.store,
                self.scheduler,
                self.ledger.clock,
                self.config.breaker,
                initial,
                self.owner,
            )
        return ref
