"""Replay: rebuild the fleet state from the log, as of now or of any past moment.

`replay` loads the newest usable snapshot at or before `until` (unless told not to) and folds
the rest of the log over it with `apply`, one page at a time (`EventStore.event_pages`: no
ids but each page's last, which becomes the state's position). It reads no clock: `until` is a
stream id, or a wall-clock timestamp in seconds that is turned into a stream id bound (stream
ids carry the server's millisecond time of each append).
"""

from __future__ import annotations

import msgspec

from events.projection import apply_all
from events.snapshot import SnapshotStore
from events.state import FleetState, paused_gc
from events.store import DEFAULT_PAGE, EventStore, Quarantined

__all__ = ["ReplayReport", "replay", "until_bound"]


class ReplayReport(msgspec.Struct, kw_only=True):
    """What a replay did."""

    snapshot_position: str | None  # the snapshot it started from, None for a full replay
    events_applied: int  # events folded after the snapshot
    position: str  # the last stream id applied
    quarantined: list[Quarantined] = []
    anomalies: int = 0


def until_bound(until: str | float | None) -> str:
    """The XRANGE end bound for `until` (a stream id, or seconds since the epoch)."""
    if until is None:
        return "+"
    if isinstance(until, str):
        return until
    return str(int(until * 1000))  # "ms" as an end bound means the last id of that millisecond


def replay(
    store: EventStore,
    until: str | float | None = None,
    use_snapshot: bool = True,
    snapshots: SnapshotStore | None = None,
    page_size: int = DEFAULT_PAGE,
) -> tuple[FleetState, ReplayReport]:
    """The fleet state as of `until` (default: the end of the log), and a report."""
    end = until_bound(until)
    state: FleetState | None = None
    if use_snapshot:
        snaps = snapshots if snapshots is not None else SnapshotStore(store)
        state = snaps.load_latest(None if end == "+" else _as_id(end))
    from_snapshot = state.position if state is not None else None
    if state is None:
        state = FleetState()
    start = "-" if from_snapshot is None else "(" + from_snapshot
    before = state.event_count
    quarantined: list[Quarantined] = []
    with paused_gc():
        for page in store.event_pages(start, end, page_size, quarantined):
            apply_all(state, page.events)
            state.position = page.last
    report = ReplayReport(
        snapshot_position=from_snapshot,
        events_applied=state.event_count - before,
        position=state.position,
        quarantined=quarantined,
        anomalies=state.anomalies,
    )
    return state, report


def _as_id(bound: str) -> str:
    return bound if "-" in bound else f"{bound}-{2**64 - 1}"
