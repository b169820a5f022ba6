"""The heartbeat's digest is taken again only when its cost allows (actors.digests)."""

from __future__ import annotations

from actors.digests import Digests
from events.state import FleetState


def test_the_last_digest_is_carried_until_another_is_due() -> None:
    now = [0.0]
    digests = Digests(share=0.01, clock=lambda: now[0])
    state = FleetState()
    first = digests.latest(state, epoch=1)
    assert first == (1, "0-0", 0, state.hot_digest())
    state.position, state.event_count, state.queue_seq = "5-0", 1, 7
    assert digests.latest(state, epoch=1) == first  # not due: taken a moment ago
    now[0] = 100.0  # far beyond 100 times what a digest of a tiny state costs
    second = digests.latest(state, epoch=1)
    assert second == (1, "5-0", 1, state.hot_digest())
    assert second[3] != first[3]


def test_a_new_epoch_is_digested_at_once() -> None:
    digests = Digests(clock=lambda: 0.0)
    state = FleetState()
    digests.latest(state, epoch=1)
    state.position = "9-0"
    assert digests.latest(state, epoch=2)[:2] == (2, "9-0")
