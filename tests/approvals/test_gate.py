"""The approval gate against the real server: waiting on the log, the timeout, who wins a race,
rules learned from the log, and a log that cannot be reached."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from events import types as t
from events.errors import StoreUnavailable
from events.store import EventStore
from forge.approvals import ApprovalGate
from forge.approvals.mcp_server import answer_text

BASH = {"command": "make deploy"}


@pytest.fixture
def store(redis_client: redis.Redis) -> EventStore:
    return EventStore(redis_client, "gate")


def _answer_when_asked(store: EventStore, **fields: object) -> threading.Thread:
    """Answer the next request from another thread, as `forge approve|deny` would."""

    def run() -> None:
        for entry in store.tail(after="0-0", block_ms=200):
            event = entry.event
            if isinstance(event, t.ApprovalRequested):
                answer = t.ApprovalAnswered(
                    at=time.time(),
                    approval_id=event.approval_id,
                    task_id=event.task_id,
                    **fields,  # type: ignore[arg-type]
                )
                store.append(answer)
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_answer_in_the_log_decides_the_call(store: EventStore) -> None:
    gate = ApprovalGate(lambda: store, "t1", 1, timeout=30.0)
    gate.start()
    answering = _answer_when_asked(store, allowed=False, reason="not today")
    decision = gate.decide("Bash", BASH)
    answering.join(5)
    assert not decision.allowed
    assert "not today" in decision.message
    assert answer_text(decision, dict(BASH)) == (
        '{"behavior": "deny", "message": "' + decision.message + '"}'
    )


def test_always_is_remembered_and_learned_from_the_log(store: EventStore) -> None:
    gate = ApprovalGate(lambda: store, "t1", 1, timeout=30.0)
    gate.start()
    answering = _answer_when_asked(store, allowed=True, always=True)
    assert gate.decide("Bash", BASH).allowed
    answering.join(5)
    before = store.length()
    assert gate.decide("Bash", BASH).allowed  # no second request
    assert store.length() == before
    # another gate of the same task (its next attempt) learns the rule from the log
    later = ApprovalGate(lambda: store, "t1", 2, timeout=30.0)
    later._seen = "0-0"  # as if it had started before the answer was recorded
    assert later.decide("Bash", BASH).allowed
    assert store.length() == before


def test_a_person_answering_just_before_the_timeout_wins(store: EventStore) -> None:
    gate = ApprovalGate(lambda: store, "t1", 1, timeout=0.3)
    gate.start()
    request = t.ApprovalRequested(
        at=time.time(), approval_id="ap-race", task_id="t1", attempt=1, tool="Bash"
    )
    position = store.append(request)
    store.append(
        t.ApprovalAnswered(at=time.time(), approval_id="ap-race", task_id="t1", allowed=True)
    )
    answer = gate._time_out("ap-race", position)
    assert answer is not None
    assert (answer.allowed, answer.by) == (True, "cli")
    answers = [e.event for e in store.read_range() if isinstance(e.event, t.ApprovalAnswered)]
    assert [a.by for a in answers] == ["cli", "timeout"]  # recorded, and ignored: it came second


def test_nobody_answering_denies_the_call_at_the_timeout(store: EventStore) -> None:
    gate = ApprovalGate(lambda: store, "t1", 1, timeout=0.5)
    gate.start()
    decision = gate.decide("Bash", BASH)
    assert not decision.allowed
    assert "nobody answered" in decision.message
    (answer,) = [e.event for e in store.read_range() if isinstance(e.event, t.ApprovalAnswered)]
    assert (answer.by, answer.allowed) == ("timeout", False)


def test_an_unreachable_log_denies_the_call(store: EventStore) -> None:
    def unreachable() -> EventStore:
        raise StoreUnavailable("cannot reach Redis")

    gate = ApprovalGate(unreachable, "t1", 1, timeout=0.5)
    gate.start()
    decision = gate.decide("Bash", BASH)
    assert not decision.allowed
    assert "could not record" in decision.message
