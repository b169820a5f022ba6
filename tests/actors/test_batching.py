"""Appends batched across tasks: the reports waiting in the orchestrator's mailbox are recorded
together, in one conditional append, with the claims of the next dispatch round.

The orchestrator is driven by hand (its thread is not started): its agents are real supervisor
actors running the fake runtime, whose reports pile up in its mailbox until the test hands the
first one over; the store counts the appends it is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pykka
import pytest
import redis

from actors.clock import SystemClock
from actors.inbox import Inbox
from actors.orchestrator import Orchestrator
from actors.scheduler import Scheduler
from events import types as t
from events.state import FleetState
from events.store import Appended, EventStore, Records
from tests.actors.fakes import FakeRuntime
from tests.actors.helpers import assert_replay_matches, config, submit


class CountingStore(EventStore):
    """The store, remembering the events of each append call (and calling `hook` after one)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        super().__init__(client, namespace)
        self.calls: list[list[t.Event]] = []
        self.hook: Callable[[], None] | None = None

    def append_groups(
        self, groups: Sequence[Records], after: str | None = None, most: int = 1000
    ) -> Appended:
        appended = super().append_groups(groups, after, most)
        self.calls.append([e for group in groups for e in group.events])
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return appended


@pytest.fixture
def driven(
    redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[Orchestrator, CountingStore, FakeRuntime]]:
    store = CountingStore(redis_client, f"batch-{time.monotonic_ns()}")
    runtime = FakeRuntime()
    scheduler = Scheduler()
    orchestrator = Orchestrator(
        store,
        FleetState(),
        {"fake": runtime},
        config(tmp_path, max_agents=3),
        scheduler,
        SystemClock(),
        seed=3,
    )
    try:
        yield orchestrator, store, runtime
    finally:
        orchestrator.agents.stop_all()
        runtime.cleanup()
        scheduler.stop()
        pykka.ActorRegistry.stop_all()


def wait_mail(orchestrator: Orchestrator, count: int, timeout: float = 10.0) -> None:
    """Wait until `count` messages wait in the orchestrator's mailbox."""
    inbox = cast(Inbox, orchestrator.actor_inbox)
    deadline = time.monotonic() + timeout
    while inbox.qsize() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{inbox.qsize()} of {count} messages arrived")
        time.sleep(0.01)


def handle_next(orchestrator: Orchestrator) -> None:
    """Let the orchestrator handle the message at the head of its mailbox (and the run of
    reports behind it, as it does)."""
    orchestrator.on_receive(cast(Inbox, orchestrator.actor_inbox).get_nowait().message)


def kinds(events: list[t.Event]) -> list[str]:
    return sorted(type(e).__name__ for e in events)


def test_waiting_reports_are_one_append_and_the_next_claims_one_more(
    driven: tuple[Orchestrator, CountingStore, FakeRuntime],
) -> None:
    orchestrator, store, runtime = driven
    for name in ("a", "b", "c"):
        submit(store, name, runtime="fake", command=["hold"])
    for name in ("d", "e", "f"):
        submit(store, name, runtime="fake", command=["ok"])
    orchestrator.on_start()  # three agents spawned, a, b and c claimed in one append
    assert kinds(store.calls[-1]) == ["AgentBusy"] * 3 + ["TaskAssigned"] * 3
    runtime.wait_started(3)
    wait_mail(orchestrator, 3)  # three starts

    handle_next(orchestrator)
    assert kinds(store.calls[-1]) == ["TaskStarted"] * 3

    before = len(store.calls)
    for name in ("a", "b", "c"):
        runtime.release(name, 1)
    wait_mail(orchestrator, 3)  # three ends
    handle_next(orchestrator)
    ends, claims = store.calls[before:]  # two appends in all
    assert kinds(ends) == ["AgentIdle"] * 3 + ["TaskCompleted"] * 3
    assert kinds(claims) == ["AgentBusy"] * 3 + ["TaskAssigned"] * 3
    assert {e.task_id for e in claims if isinstance(e, t.TaskAssigned)} == {"d", "e", "f"}
    assert_replay_matches(store, orchestrator.state)


def test_an_outcome_and_the_next_claim_are_one_append(
    driven: tuple[Orchestrator, CountingStore, FakeRuntime],
) -> None:
    orchestrator, store, runtime = driven
    for name in ("a", "b", "c"):
        submit(store, name, runtime="fake", command=["hold"])
    submit(store, "d", runtime="fake", command=["ok"])
    orchestrator.on_start()
    runtime.wait_started(3)
    wait_mail(orchestrator, 3)
    handle_next(orchestrator)  # the starts

    runtime.release("a", 1)
    runtime.release("b", 1)
    wait_mail(orchestrator, 2)
    inbox = cast(Inbox, orchestrator.actor_inbox)
    first: Any = inbox.get_nowait().message
    second: Any = inbox.get_nowait().message
    # the second end arrives while the first is being recorded: the dispatch after the first
    # waits for it, and the freed agent's claim goes with the second end's outcome
    store.hook = lambda: orchestrator.actor_ref.tell(second)
    before = len(store.calls)
    orchestrator.on_receive(first)
    assert kinds(store.calls[before]) == ["AgentIdle", "TaskCompleted"]
    assert len(store.calls) == before + 1  # no dispatch round of its own

    handle_next(orchestrator)
    together = store.calls[before + 1]
    assert kinds(together) == ["AgentBusy", "AgentIdle", "TaskAssigned", "TaskCompleted"]
    [claim] = [e for e in together if isinstance(e, t.TaskAssigned)]
    assert (claim.task_id, claim.agent_id) == ("d", first.agent_id)
    assert len(store.calls) == before + 2
    assert_replay_matches(store, orchestrator.state)
