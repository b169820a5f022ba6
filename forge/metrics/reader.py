"""Prometheus metrics folded from the log, so that they agree with `forge status`.

`LogMetrics` is a reader of the log: it keeps its own `FleetState` (the same pure projection a
replay builds) and, beside it, counters of the events it applied (attempts started, completed,
failed, tasks dead-lettered, by runtime; attempt durations and queue waits). Every scrape first
catches up with the log, then reports the state's gauges and the counters. Nothing is read
from the daemon's internals except, through the heartbeat it publishes in Redis, how far it
is behind the log and since when it runs.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from events import types as t
from events.errors import ForgeError
from events.projection import apply_entries
from events.state import PRIORITIES, FleetState, TaskState
from events.store import EventStore

__all__ = ["DURATION_BUCKETS", "WAIT_BUCKETS", "Histogram", "LogMetrics"]

DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
WAIT_BUCKETS = (0.1, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0)
BREAKER_STATES = ("closed", "open", "half_open")
_PAGE = 5000


class Histogram:
    """Bucket counts and a sum, per label value (made cumulative when exported)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts, total = self.series.setdefault(labels, ([0] * (len(self.buckets) + 1), [0.0]))
        counts[bisect.bisect_left(self.buckets, value)] += 1  # the last one is +Inf
        total[0] += value

    def family(self, name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=labels)
        for key, (counts, total) in sorted(self.series.items()):
            bounds = [*(repr(b) for b in self.buckets), "+Inf"]
            cumulative = list(itertools.accumulate(counts))
            family.add_metric(list(key), list(zip(bounds, cumulative, strict=True)), total[0])
        return family


def _runtime(task: TaskState | None) -> str:
    return task.definition.runtime if task is not None else "unknown"


class LogMetrics:
    """The fleet's metrics, as of the last entry of the log it read (a prometheus Collector)."""

    def __init__(self, store: EventStore, namespace: str, heartbeat: Any = None) -> None:
        self.store = store
        self.namespace = namespace
        self.heartbeat = heartbeat  # () -> forge.daemon.Heartbeat | None
        self.state = FleetState()
        self.lock = threading.Lock()
        self.reachable = False
        self.started: dict[str, int] = {}
        self.completed: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.dead_lettered: dict[str, int] = {}
        self.durations = Histogram(DURATION_BUCKETS)
        self.waits = Histogram(WAIT_BUCKETS)
        self.queued_at: dict[str, float] = {}
        # spend and tokens by model, from the usage events (finished tasks leave the state)
        self.spend: dict[tuple[str, ...], float] = {}
        self.tokens: dict[tuple[str, ...], float] = {}

    # -- reading the log ----------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply the entries appended since the last call; how many were applied."""
        applied = 0
        with self.lock:
            position = self.state.position
            start = "-" if position == "0-0" else "(" + position
            for page in self.store.pages(start, "+", _PAGE):  # the fast path replay uses
                for entry in page:
                    event = entry[2]
                    task_id = getattr(event, "task_id", None)
                    task = self.state.tasks.get(task_id) if task_id else None
                    was = task.state if task is not None else None
                    self._count(event, task)
                    apply_entries(self.state, [entry])
                    now = self.state.tasks.get(task_id) if task_id else None
                    if now is not None and now.state == "queued" and was != "queued":
                        self.queued_at[now.task_id] = event.at  # it entered the queue
                applied += len(page)
            return applied

    def _count(self, event: t.Event, task: TaskState | None) -> None:
        """Update the counters with an event about `task`, before the state applies it."""
        runtime = _runtime(task)
        match event:
            case t.TaskAssigned():
                queued = self.queued_at.pop(event.task_id, None)
                if queued is not None and task is not None and task.state == "queued":
                    self.waits.observe((runtime,), max(0.0, event.at - queued))
            case t.TaskStarted():
                _bump(self.started, runtime)
            case t.TaskCompleted() | t.TaskFailed():
                _bump(
                    self.completed if isinstance(event, t.TaskCompleted) else self.failed, runtime
                )
                current = task.current if task is not None else None
                if current is not None and current.attempt == event.attempt and current.started_at:
                    outcome = "completed" if isinstance(event, t.TaskCompleted) else "failed"
                    self.durations.observe(
                        (runtime, outcome), max(0.0, event.at - current.started_at)
                    )
            case t.TaskDeadLettered():
                _bump(self.dead_lettered, runtime)
            case t.TaskUsage():
                self._usage(event, task)
            case t.TaskCancelled():
                self.queued_at.pop(event.task_id, None)
            case _:
                pass

    def _usage(self, event: t.TaskUsage, task: TaskState | None) -> None:
        """Usage figures are running totals of the attempt: add what changed (as the
        projection does), under the task's model."""
        current = task.current if task is not None else None
        if task is None or current is None:
            return
        model = task.definition.model or "default"
        self.spend[(model,)] = self.spend.get((model,), 0.0) + event.cost_usd - current.cost_usd
        for kind, now, before in (
            ("input", event.input_tokens, current.input_tokens),
            ("output", event.output_tokens, current.output_tokens),
        ):
            self.tokens[(model, kind)] = self.tokens.get((model, kind), 0.0) + now - before

    # -- the Collector protocol ----------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        try:
            self.catch_up()
            length = self.store.length()
            self.reachable = True
        except ForgeError:
            self.reachable = False  # report what was read last; the log gauge says why
            length = None
        with self.lock:
            yield from self._families(self.state, length)

    def _families(self, state: FleetState, length: int | None) -> Iterator[Metric]:
        yield _gauge(
            "forge_log_reachable",
            "1 when the log answered this scrape.",
            {(): float(self.reachable)},
        )
        agents: dict[tuple[str, ...], float] = {}
        for agent in state.agents.values():
            agents[(agent.status,)] = agents.get((agent.status,), 0) + 1
        yield _gauge("forge_agents", "Agents by state.", agents, ["state"])
        yield _gauge(
            "forge_queue_depth",
            "Queued tasks by priority (1 runs first).",
            {(str(p),): float(len(state.queues[p])) for p in PRIORITIES},
            ["priority"],
        )
        yield _gauge(
            "forge_tasks",
            "Tasks by state.",
            {(s,): float(n) for s, n in state.counts().items()},
            ["state"],
        )
        for name, doc, values in (
            ("forge_task_attempts_started", "Attempts started, by runtime.", self.started),
            ("forge_task_attempts_completed", "Attempts that completed.", self.completed),
            ("forge_task_attempts_failed", "Attempts that failed (retried or not).", self.failed),
            (
                "forge_tasks_dead_lettered",
                "Tasks dead-lettered after their retries.",
                self.dead_lettered,
            ),
        ):
            family = CounterMetricFamily(name, doc, labels=["runtime"])
            for runtime, n in sorted(values.items()):
                family.add_metric([runtime], n)
            yield family
        yield self.durations.family(
            "forge_task_attempt_duration_seconds",
            "How long attempts ran, from start to end, by runtime and outcome.",
            ["runtime", "outcome"],
        )
        yield self.waits.family(
            "forge_task_queue_wait_seconds",
            "How long tasks waited in the queue before an agent took them.",
            ["runtime"],
        )
        yield from self._spend(state)
        breakers: dict[tuple[str, ...], float] = {}
        for b in state.breakers.values():
            for s in BREAKER_STATES:
                breakers[(b.name, s)] = float(b.state == s)
        yield _gauge(
            "forge_breaker_state",
            "1 for each breaker's current state.",
            breakers,
            ["breaker", "state"],
        )
        waiting = sum(1 for a in state.approvals.values() if a.status == "pending")
        yield _gauge(
            "forge_approvals_waiting",
            "Tool calls waiting for forge approve|deny.",
            {(): float(waiting)},
        )
        yield _gauge(
            "forge_log_events", "Events applied by this reader.", {(): float(state.event_count)}
        )
        if length is not None:
            yield _gauge("forge_log_length", "Entries in the log stream.", {(): float(length)})
        yield from self._daemon(state)

    def _spend(self, state: FleetState) -> Iterator[Metric]:
        spend, tokens = self.spend, self.tokens
        yield _gauge("forge_spend_usd", "Recorded spend in US dollars, by model.", spend, ["model"])
        yield _gauge(
            "forge_tokens", "Tokens used, by model and direction.", tokens, ["model", "direction"]
        )
        yield _gauge(
            "forge_spend_total_usd",
            "Recorded spend of the whole fleet.",
            {(): state.total_cost_usd},
        )

    def _daemon(self, state: FleetState) -> Iterator[Metric]:
        beat = None
        if self.heartbeat is not None and self.reachable:
            try:
                beat = self.heartbeat()
            except ForgeError:
                beat = None
        yield _gauge(
            "forge_daemon_up",
            "1 when a daemon's heartbeat is fresh.",
            {(): float(beat is not None)},
        )
        if beat is None:
            return
        behind = max(0, state.event_count - beat.event_count)
        yield _gauge(
            "forge_daemon_behind_events",
            "Events of the log the daemon had not applied at its last heartbeat.",
            {(): float(behind)},
        )
        yield _gauge("forge_daemon_epoch", "The running daemon's epoch.", {(): float(beat.epoch)})
        yield _gauge(
            "forge_daemon_uptime_seconds",
            "Seconds since the running daemon started.",
            {(): max(0.0, time.time() - beat.started_at)},
        )


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _gauge(
    name: str, doc: str, values: dict[tuple[str, ...], float], labels: list[str] | None = None
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels or [])
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family
