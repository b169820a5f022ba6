"""`forge events verify`: a full replay of the log, checked against everything derived from it.

1. every entry decodes (the undecodable ones are quarantined and listed);
2. the derived task index agrees with the replayed tasks (state, attempt, epoch);
3. the per-task index (each task's stream ids, finished tasks' summaries) agrees with the log
   (`--repair-task-index` rebuilds it when it does not);
4. the newest snapshot equals a full replay up to its position;
5. if a daemon runs, its live state equals a full replay up to the position of its latest
   heartbeat (the daemon publishes a digest of its live state with each heartbeat; equal
   digests mean equal states, orderings included).
"""

from __future__ import annotations

import msgspec

from events.replay import replay
from events.snapshot import SnapshotStore
from events.state import FleetState
from events.store import IndexEntry
from events.task_index import TaskIndex
from forge.cli.app import App
from forge.cli.render import daemon_info
from forge.daemon import state_digest

__all__ = ["Check", "VerifyReport", "verify_log"]


class Check(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    detail: str


class VerifyReport(msgspec.Struct, kw_only=True):
    ok: bool
    events: int
    position: str
    checks: list[Check]
    quarantined: list[dict[str, object]] = []

    @property
    def lines(self) -> list[str]:
        out = [f"replayed {self.events} events up to {self.position}"]
        out += [f"{'ok  ' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        out += [f"      quarantined {q['stream_id']}: {q['reason']}" for q in self.quarantined]
        out.append("log verified" if self.ok else "problems found")
        return out


def _index_check(app: App, state: FleetState) -> Check:
    index = app.store.index_entries()
    wrong = []
    for task_id, task in state.tasks.items():
        entry = index.get(task_id)
        if entry is None or (entry.state, entry.attempt, entry.epoch) != (
            task.state,
            task.attempt,
            task.epoch,
        ):
            wrong.append(task_id)
    for task_id, done in state.finished.items():  # finished tasks: their final entry
        entry = index.get(task_id)
        if entry is None or IndexEntry.parse(done) != entry:
            wrong.append(task_id)
    extra = sorted(set(index) - set(state.tasks) - set(state.finished))
    ok = not wrong and not extra
    detail = f"{len(index)} tasks agree with the replay"
    if not ok:
        detail = f"{len(wrong)} tasks differ ({', '.join(wrong[:5])}), {len(extra)} unknown"
    return Check(name="task index", ok=ok, detail=detail)


def _snapshot_check(app: App) -> Check:
    snapshots = SnapshotStore(app.store)
    positions = snapshots.positions()
    if not positions:
        return Check(name="snapshot", ok=True, detail="no snapshot yet")
    newest = positions[-1]
    saved = snapshots.load(newest)
    if saved is None:
        return Check(name="snapshot", ok=False, detail=f"snapshot {newest} is unusable")
    replayed, _ = replay(app.store, until=newest, use_snapshot=False)
    same = replayed.same_as(saved)
    detail = f"snapshot {newest} {'equals' if same else 'DIFFERS FROM'} a full replay to there"
    return Check(name="snapshot", ok=same, detail=detail)


def _daemon_check(app: App) -> Check:
    info = daemon_info(app)
    if not info.nodes:
        return Check(name="daemon", ok=True, detail="no daemon running: nothing to compare")
    details, ok = [], True
    for beat in info.nodes:  # every node's live state, each at the position it published
        replayed, _ = replay(app.store, until=beat.position, use_snapshot=False)
        same = state_digest(replayed) == beat.digest
        ok = ok and same
        details.append(
            f"live state of {beat.node_id} (epoch {beat.epoch}) at {beat.position} "
            + ("equals the replayed state" if same else "DIVERGES from the replayed state")
        )
    return Check(name="daemon", ok=ok, detail="; ".join(details))


def _task_index_check(app: App, state: FleetState, repair: bool) -> Check:
    index = TaskIndex(app.store)
    problems = index.check(state)
    if problems and repair:
        index.rebuild()
        left = index.check(state)
        detail = f"{len(problems)} wrong, rebuilt from the log" + (
            f"; still wrong: {', '.join(left[:5])}" if left else ""
        )
        return Check(name="per-task index", ok=not left, detail=detail)
    detail = f"{len(state.finished)} finished tasks and every task's events agree with the log"
    if problems:
        detail = f"{len(problems)} wrong ({', '.join(problems[:5])}): --repair-task-index"
    return Check(name="per-task index", ok=not problems, detail=detail)


def verify_log(app: App, repair_task_index: bool = False) -> VerifyReport:
    state, report = replay(app.store, use_snapshot=False)
    quarantined = app.store.quarantined()
    checks = [
        Check(
            name="decoding",
            ok=not quarantined,
            detail=f"{len(quarantined)} quarantined entries"
            if quarantined
            else "every entry decodes",
        ),
        _index_check(app, state),
        _task_index_check(app, state, repair_task_index),
        _snapshot_check(app),
        _daemon_check(app),
    ]
    return VerifyReport(
        ok=all(c.ok for c in checks),
        events=state.event_count,
        position=report.position,
        checks=checks,
        quarantined=[
            {"stream_id": q.stream_id, "size": q.size, "reason": q.reason} for q in quarantined
        ],
    )
