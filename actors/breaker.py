"""CircuitBreaker: one actor per protected dependency (for example the model API).

CLOSED → OPEN after `failure_threshold` consecutive infrastructure failures, or at once when a
failure carries a reset time (a 429's retry-after, a usage-limit reset); OPEN → HALF_OPEN when
the open period ends; HALF_OPEN → CLOSED after `success_threshold` successes, or back to OPEN on
a failure. Every transition is appended to the log before the actor acts on it; the
orchestrator reads the breaker's state from its projection of that log, so tasks that need an
open dependency stay queued without using up attempts.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pykka
import structlog

from actors.clock import Clock
from actors.messages import BreakerFailure, BreakerSuccess, BreakerVerdict, Timer
from actors.scheduler import Scheduler, Teller
from events.state import BreakerState
from events.store import EventStore as Journal
from events.types import BreakerClosed, BreakerHalfOpened, BreakerOpened

__all__ = ["BreakerPolicy", "CircuitBreaker"]


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    failure_threshold: int = 5
    success_threshold: int = 2
    open_timeout: float = 60.0


class CircuitBreaker(pykka.ThreadingActor):
    def __init__(
        self,
        name: str,
        journal: Journal,
        scheduler: Scheduler,
        clock: Clock,
        policy: BreakerPolicy,
        initial: BreakerState | None = None,
        listener: Teller | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.journal = journal
        self.scheduler = scheduler
        self.clock = clock
        self.policy = policy
        self.state = initial.state if initial else "closed"
        self.until = initial.until if initial else None
        self.failures = initial.failures if initial else 0
        self.successes = 0
        self.listener = listener  # told a BreakerVerdict after each task failure
        self.log: Any = None

    def on_start(self) -> None:
        self.log = structlog.get_logger("actors.breaker").bind(breaker=self.name)
        if self.state == "open":
            self._schedule_half_open()

    def on_receive(self, message: Any) -> Any:
        match message:
            case BreakerFailure(reason=reason, reset_at=reset_at, task_id=task_id):
                self._failure(reason, reset_at)
                if task_id is not None and self.listener is not None:
                    self.listener.tell(BreakerVerdict(task_id))
            case BreakerSuccess():
                self._success()
            case Timer(kind="breaker"):
                if self.state == "open" and self.until is not None:
                    if self.clock.now() + 1e-3 >= self.until:
                        self._half_open()
                    else:
                        self._schedule_half_open()
            case _:
                return super().on_receive(message)
        return None

    def _failure(self, reason: str, reset_at: float | None) -> None:
        now = self.clock.now()
        self.successes = 0
        if self.state == "open":
            if reset_at is not None and (self.until is None or reset_at > self.until):
                self._open(reason, reset_at)  # a later reset time extends the open period
            return
        self.failures += 1
        if reset_at is not None and reset_at > now:
            self._open(reason, reset_at)
        elif self.state == "half_open" or self.failures >= self.policy.failure_threshold:
            self._open(reason, now + self.policy.open_timeout)

    def _success(self) -> None:
        if self.state == "closed":
            self.failures = 0
        elif self.state == "half_open":
            self.successes += 1
            if self.successes >= self.policy.success_threshold:
                self.journal.append_batch([BreakerClosed(at=self.clock.now(), name=self.name)])
                self.state, self.until, self.failures, self.successes = "closed", None, 0, 0
                self.log.info("breaker closed")

    def _open(self, reason: str, until: float) -> None:
        self.journal.append_batch(
            [
                BreakerOpened(
                    at=self.clock.now(),
                    name=self.name,
                    until=until,
                    reason=reason,
                    failures=self.failures,
                )
            ]
        )
        self.state, self.until = "open", until
        self.log.warning("breaker opened", until=until, reason=reason, failures=self.failures)
        self._schedule_half_open()

    def _half_open(self) -> None:
        self.journal.append_batch([BreakerHalfOpened(at=self.clock.now(), name=self.name)])
        self.state, self.successes = "half_open", 0
        self.log.info("breaker half-open")

    def _schedule_half_open(self) -> None:
        delay = (self.until or self.clock.now()) - self.clock.now()
        self.scheduler.after(delay, self.actor_ref, Timer(kind="breaker", key=self.name))
