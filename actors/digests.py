"""The heartbeat's digest of the live state, at a cost kept to a small share of the
orchestrator's time.

A digest encodes the whole hot state: O(live work), ~1 ms per 1,000 queued tasks. Taken on
every beat (2 s) it would stop the orchestrator for a tenth of a second under a backlog of
100,000 tasks. So a digest is taken again only once `share` of the time since the last one
covers what the last one cost; until then the beat carries the last one, with the position and
event count it was taken at (`forge events verify` replays to that position). A small state is
digested on every beat, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from events.state import FleetState

__all__ = ["Digests"]

Digest = tuple[int, str, int, str]  # (epoch, position, event count, hot digest)


class Digests:
    def __init__(self, share: float = 0.01, clock: Callable[[], float] = time.monotonic) -> None:
        self.share = share
        self.clock = clock
        self._last: Digest | None = None
        self._due = 0.0

    def latest(self, state: FleetState, epoch: int) -> Digest:
        """The digest of `state` now, or the last one taken if another is not due yet."""
        now = self.clock()
        if self._last is None or now >= self._due or self._last[0] != epoch:
            started = time.perf_counter()
            self._last = (epoch, state.position, state.event_count, state.hot_digest())
            self._due = now + (time.perf_counter() - started) / self.share
        return self._last
