"""The per-task index: one task's events, and finished tasks' summaries, without a replay.

Finished tasks leave the fleet state's hot part (`events.projection_eviction`); what the CLI
shows of them comes from here. Two derived, rebuildable structures per namespace:

* a sorted set per task (`Keys.task_events`) of the stream ids of its events, so reading one
  task costs O(its events);
* a hash (`Keys.finished_summaries`) of finished task id -> msgpack `TaskState`, as its own
  events made it, so `forge task list` reads finished tasks without folding the log.

`TaskIndex.update()` covers the log from the last position it recorded up to the end, and
every reader runs it before reading (so nothing appended since is missed). The daemon's runs on
a thread of its own (`events.task_indexer.TaskIndexer`), fed the entries the orchestrator
applies, so that it need not read them again, each with the task it ended (its final state, as
the orchestrator evicted it: that is the summary, equal to what the task's events make); a
summary not fed is folded from the events it kept of the task, or else from its events read
back. Updating is idempotent; `rebuild()` starts over from the whole log (`forge events verify
--repair`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from redis.commands.core import Script

from events import types as t
from events.codec import decode_entry
from events.errors import UndecodableEvent
from events.projection import apply
from events.state import EVICTED_STATES, FleetState, PackedMap, TaskState
from events.store import EventStore, LogEntry, entry_fields, load_script, redis_errors

__all__ = ["Fed", "TaskIndex", "fold_task", "manual_retry"]

_PAGE = 2000
_MOST_OPEN = 10_000  # open tasks whose events the indexer keeps at most (the rest: read back)
_TASKS_PER_CALL = 200  # tasks whose entries one script call reads (~1 ms of the server's time)
_ENTRIES_PER_CALL = 500  # entries one script call indexes (~1 ms too)

# (the id before, the entry's id, its event, the task it ended: its final state, or None,
# cold: its task was and stays out of the hot state: a finished task's event, a merge or usage
# come late, which its summary folds and the orchestrator's state does not hold)
Fed = tuple[str, str, t.Event, TaskState | None, bool]
_ENCODER = msgspec.msgpack.Encoder()
_TASK_DECODER = msgspec.msgpack.Decoder(TaskState)


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def fold_task(task_id: str, events: Iterable[t.Event]) -> TaskState | None:
    """The state of one task as its own events make it (its dependencies count as met: what
    they did is in its own events, e.g. a dependency failure)."""
    state = FleetState()
    task: TaskState | None = None
    for event in events:
        if isinstance(event, t.TaskSubmitted):
            for dep in event.spec.after:
                if dep != task_id:  # (a task waiting on itself never runs)
                    state.finished.setdefault(dep, "completed||")
        apply(state, event)
        task = state.tasks.get(task_id, task)
        if task is not None and state.finished.pop(task_id, None) is not None:
            state.tasks[task_id] = task  # keep it hot: later events (a merge, usage) apply
    return task


class TaskIndex:
    """Reads and maintains one namespace's per-task index."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.keys = store.keys
        self.client = store.client
        self._task_entries: Script = store.client.register_script(load_script("task_entries.lua"))
        self._index_entries: Script = store.client.register_script(load_script("index_entries.lua"))
        # the events of the open tasks whose submission this indexer read (O(live work)),
        # valid while the position is where this indexer left it
        self._open: dict[str, list[t.Event]] = {}
        self._final: dict[str, TaskState] = {}  # tasks a fed entry ended, not summarised yet
        self._cold: set[str] = set()  # ... and tasks a fed entry touched while they were ended
        self._deferred: dict[str, None] = {}  # ended by the index, not yet by what we kept
        self._seen_to = ""

    def position(self) -> str:
        """The last stream id the index covers ("0-0": none)."""
        with redis_errors("read task index"):
            raw: Any = self.client.get(self.keys.task_events_position)
        return raw.decode() if raw else "0-0"

    def update(self, fed: deque[Fed] | None = None) -> int:
        """Index every entry after `position()`; the number of entries indexed.

        `fed` holds entries the caller has read and decoded already (the daemon's orchestrator
        applies every entry), each with the id of the one before it, in log order: those that
        follow on from the position are indexed as they are, and a gap before one is filled
        from the log. What lies beyond the last is left for the next update: the orchestrator
        feeds it once it has applied it, with the tasks it ended (read now, their final states
        would be missed). Without `fed`, the log is indexed to its end."""
        done = 0
        position = self.position()
        if position != self._seen_to:
            self._open.clear()  # another indexer moved the position: what we hold may have gaps
            self._deferred.clear()
            self._final.clear()
            self._cold.clear()
        waiting = len(fed) if fed is not None else 0  # (what comes in meanwhile: next update)
        while True:
            run: list[tuple[str, t.Event | None, TaskState | None, bool]] = []
            while fed and waiting and len(run) < _PAGE:
                before, entry_id, event, ended, cold = fed[0]
                if _order(entry_id) > _order(position):
                    if before != position:
                        break  # a gap before it: the log fills it (below)
                    run.append((entry_id, event, ended, cold))
                    position = entry_id
                fed.popleft()  # (else indexed already)
                waiting -= 1
            if run:
                done += self._index(run, last=False, fed=True)
                continue
            if fed is not None and not waiting:
                return done
            start = "-" if position == "0-0" else "(" + position
            gap = fed is not None  # (and waiting: the entries up to the next one's `before`)
            end = fed[0][0] if fed is not None else "+"
            with redis_errors("read log"):
                page: Any = self.client.xrange(self.keys.log, start, end, count=_PAGE)
            if not page and gap:
                fed, waiting = None, 0  # its `before` is not in the log: index to the end
                continue
            if not page:
                if self._deferred:  # the end of the log: what they make is their summary
                    self._summarise(list(self._deferred), last=True)
                    self._deferred.clear()
                return done
            read = [(i.decode(), _decoded(f), None, False) for i, f in page]
            done += self._index(read, last=not gap and len(page) < _PAGE)
            position = page[-1][0].decode()
            if len(page) < _PAGE and not waiting:
                return done

    def _index(
        self,
        run: Sequence[tuple[str, t.Event | None, TaskState | None, bool]],
        last: bool,
        fed: bool = False,
    ) -> int:
        """Index `run`, the entries that follow the position (None: undecodable) with the task
        each ended (if known) and whether its task was cold (see `Fed`), and move the position
        past them; `last`: the log holds nothing beyond them (as far as we know); `fed`: they
        come from the daemon's orchestrator, whose evictions tell when each task ends.

        A script call per few hundred entries adds them to their tasks' sets and reads the
        touched tasks' index values (packing a command per entry cost the daemon's interpreter
        more); the position moves with the summaries' writes, after them, so that a reader
        never finds it past a summary not written yet."""
        values: dict[str, bytes | None] = {}  # each touched task's index value
        for start in range(0, len(run), _ENTRIES_PER_CALL):
            if start:
                time.sleep(0)  # let the daemon's other threads have the interpreter
            touched: dict[str, None] = {}
            pairs: list[str] = []  # entry id, task id, ...
            for entry_id, event, ended, cold in run[start : start + _ENTRIES_PER_CALL]:
                task_id = self._follow(event, ended, cold, keep=not fed)
                if task_id is not None:
                    pairs += (entry_id, task_id)
                    touched[task_id] = None
            if touched:
                keys = [self.keys.index, *map(self.keys.task_events, touched)]
                with redis_errors("update task index"):
                    reply: Any = self._index_entries(keys=keys, args=pairs)
                values.update(zip(touched, reply, strict=True))
        position = run[-1][0]
        self._summarise(list(values), last, list(values.values()), position, fed)
        self._seen_to = position
        return len(run)

    def _follow(
        self,
        event: t.Event | None,
        ended: TaskState | None = None,
        cold: bool = False,
        keep: bool = True,
    ) -> str | None:
        """The task an entry belongs to (None: none, or undecodable); its final state is kept
        if the entry ended it (`ended`), it is noted if `cold` (its summary is its events'), else
        its events are kept while the task is open and this indexer has seen all of them (from
        its submission, if it was to `keep` them: not for fed entries, whose tasks' final states
        are fed), so that its summary is folded without reading its events back."""
        task_id = getattr(event, "task_id", None)
        if event is None or not isinstance(task_id, str):
            return None
        if ended is not None:
            self._final[task_id] = ended
            self._cold.discard(task_id)
            self._open.pop(task_id, None)
            return task_id
        self._final.pop(task_id, None)  # (an event since it ended)
        if cold:
            self._cold.add(task_id)
        else:
            self._cold.discard(task_id)
        if isinstance(event, t.TaskSubmitted):
            if keep and len(self._open) < _MOST_OPEN:
                self._open[task_id] = [event]
            else:  # a backlog this long is summarised by reading its events back
                self._open.pop(task_id, None)
        elif task_id in self._open:
            self._open[task_id].append(event)
        return task_id

    def _summarise(
        self,
        task_ids: Sequence[str],
        last: bool,
        values: Sequence[bytes | None] | None = None,
        position: str | None = None,
        fed: bool = False,
    ) -> None:
        """Refresh the summaries of the finished ones among `task_ids` (the derived append index
        knows each task's state: `values`, if the caller has them): from the events kept since
        their submission, or else by reading them back. One whose kept events do not end it yet
        ends in a later page (read next); on the `last` page what they make is its summary, as
        a read-back's is. `position`: the index's position to record with them. A task that
        a `fed` run touches and does not end, and that the index ends, ends further on: it is
        summarised when its final state is fed."""
        raw: Any = values
        if raw is None:
            with redis_errors("read index"):
                raw = self.client.hmget(self.keys.index, list(task_ids))
        ended = [
            tid
            for tid, value in zip(task_ids, raw, strict=True)
            if value and value.decode().partition("|")[0] in EVICTED_STATES
        ]
        ended_set = set(ended)
        gone = [tid for tid in task_ids if tid not in ended_set]
        for tid in gone:  # (reopened since, as the index has it)
            self._final.pop(tid, None)
            self._cold.discard(tid)
        summaries: dict[str, TaskState | None] = {}
        for n, tid in enumerate(ended):
            if n % 32 == 31:
                time.sleep(0)  # let the daemon's other threads have the interpreter
            final = self._final.pop(tid, None)
            if final is not None:
                self._deferred.pop(tid, None)
                self._open.pop(tid, None)
                summaries[tid] = final
            elif tid in self._cold:
                self._cold.discard(tid)
                self._deferred.pop(tid, None)  # (its events are read back, below)
            elif fed and not last:
                self._deferred[tid] = None  # it ends further on: summarised when fed there
                summaries[tid] = None  # (not read back now)
            elif tid in self._open:
                task = fold_task(tid, self._open[tid])
                if not last and (task is None or task.state not in EVICTED_STATES):
                    self._deferred[tid] = None  # it ends further on: summarised when read there
                    continue
                self._deferred.pop(tid, None)
                del self._open[tid]
                summaries[tid] = task
        unkept = [tid for tid in ended if tid not in summaries and tid not in self._open]
        for tid, entries in self._events_of(unkept).items():
            summaries[tid] = fold_task(tid, (e.event for e in entries))
        with redis_errors("update task summaries"):
            pipe = self.client.pipeline(transaction=False)
            encoded = {t: _summary(s) for t, s in summaries.items() if s is not None}
            if encoded:
                pipe.hset(self.keys.finished_summaries, mapping=encoded)  # type: ignore[arg-type]
            if gone:
                pipe.hdel(self.keys.finished_summaries, *gone)  # reopened since
            if position is not None:
                pipe.set(self.keys.task_events_position, position)
            pipe.execute()

    def entry_ids(self, task_id: str) -> list[str]:
        """The stream ids of the task's indexed events, in log order."""
        with redis_errors("read task index"):
            raw: Any = self.client.zrange(self.keys.task_events(task_id), 0, -1)
        return sorted((r.decode() for r in raw), key=_order)

    def _entries(self, task_id: str) -> list[LogEntry]:
        return self._events_of([task_id])[task_id]

    def _events_of(self, task_ids: Sequence[str]) -> dict[str, list[LogEntry]]:
        """Each task's entries in log order, read by the server through the index sets, a few
        hundred tasks a call (undecodable entries are left out: the log's readers quarantine
        them)."""
        out: dict[str, list[LogEntry]] = {}
        for start in range(0, len(task_ids), _TASKS_PER_CALL):
            chunk = task_ids[start : start + _TASKS_PER_CALL]
            keys = [self.keys.log, *(self.keys.task_events(tid) for tid in chunk)]
            with redis_errors("read task events"):
                replies: Any = self._task_entries(keys=keys, args=[])
            for task_id, reply in zip(chunk, replies, strict=True):
                entries: list[LogEntry] = []
                for raw_id, flat in reply:
                    try:
                        event = decode_entry(entry_fields(flat))
                    except (UndecodableEvent, ValueError):
                        continue
                    entries.append(LogEntry(raw_id.decode(), event))
                entries.sort(key=lambda e: _order(e.id))
                out[task_id] = entries
        return out

    def entries(self, task_id: str) -> list[LogEntry]:
        """Every entry of the task, in log order (the index is brought up to date first)."""
        self.update()
        return self._entries(task_id)

    def events(self, task_id: str) -> list[t.Event]:
        """Every event of the task, in log order (the index is brought up to date first)."""
        return [e.event for e in self.entries(task_id)]

    def task(self, task_id: str) -> TaskState | None:
        """The task as its events make it, or None if the log has none."""
        return fold_task(task_id, self.events(task_id))

    def tasks(self, task_ids: Sequence[str]) -> dict[str, TaskState]:
        """Several tasks as their events make them, read a few hundred to a round trip (the
        index is brought up to date first); unknown ones are left out."""
        self.update()
        out: dict[str, TaskState] = {}
        for task_id, entries in self._events_of(task_ids).items():
            task = fold_task(task_id, (e.event for e in entries))
            if task is not None:
                out[task_id] = task
        return out

    def full_state(self, state: FleetState) -> FleetState:
        """A copy of `state` with every finished task back in `tasks` (after the hot ones) and
        an empty `finished` map: O(history), for tests and a batch's own tasks."""
        full = state.copy()
        full.tasks.update(self.tasks(list(state.finished)))
        full.finished, full.finished_counts = PackedMap(), {}
        return full

    def finished(self) -> list[TaskState]:
        """Every finished task's summary (the index is brought up to date first)."""
        self.update()
        with redis_errors("read task summaries"):
            raw: Any = self.client.hvals(self.keys.finished_summaries)
        return [_TASK_DECODER.decode(r) for r in raw]

    def check(self, state: FleetState) -> list[str]:
        """What the index gets wrong against the whole log and `state`, its full replay: the
        ids indexed for each task, and the finished tasks' summaries (O(history))."""
        self.update()
        expected: dict[str, list[str]] = {}
        for entry in self.store.read_range():
            task_id = getattr(entry.event, "task_id", None)
            if isinstance(task_id, str):
                expected.setdefault(task_id, []).append(entry.id)
        problems: list[str] = []
        tasks = list(expected)
        with redis_errors("read task index"):
            pipe = self.client.pipeline(transaction=False)
            for task_id in tasks:
                pipe.zrange(self.keys.task_events(task_id), 0, -1)
            indexed = pipe.execute()
            raw: Any = self.client.hgetall(self.keys.finished_summaries)
        for task_id, got in zip(tasks, indexed, strict=True):
            if sorted((g.decode() for g in got), key=_order) != expected[task_id]:
                problems.append(f"events of {task_id}")
        summaries = {k.decode(): _TASK_DECODER.decode(v) for k, v in raw.items()}
        for task_id, done in state.finished.items():
            summary = summaries.pop(task_id, None)
            if summary is None or summary.state != done.partition("|")[0]:
                problems.append(f"summary of {task_id}")
        problems += [f"summary of {task_id} (not finished)" for task_id in summaries]
        return problems

    def rebuild(self) -> int:
        """Drop the index and index the whole log again; the number of entries indexed."""
        with redis_errors("rebuild task index"):
            stale = list(self.client.scan_iter(match=self.keys.task_events_prefix + "*"))
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.keys.task_events_position, self.keys.finished_summaries)
            for i in range(0, len(stale), 1000):
                pipe.delete(*stale[i : i + 1000])
            pipe.execute()
        return self.update()


def manual_retry(store: EventStore, state: FleetState, task_id: str, at: float) -> t.TaskQueued:
    """The event that queues a failed, dead-lettered or cancelled task again by hand; a task
    that left the hot state comes back with it (read through the index)."""
    restore = None
    if task_id not in state.tasks:
        task = TaskIndex(store).task(task_id)
        restore = None if task is None else msgspec.to_builtins(task)
    return t.TaskQueued(at=at, task_id=task_id, reason="manual_retry", restore=restore)


def _summary(task: TaskState) -> bytes:
    """A finished task's summary, encoded. It has no place in the queue: its `queued_seq` (the
    fleet's count of enqueues, where the orchestrator's final state has it, but a count of the
    task's own in a fold of its events) is left at 0, so that both make the same summary."""
    return _ENCODER.encode(msgspec.structs.replace(task, queued_seq=0))


def _decoded(fields: dict[bytes, bytes]) -> t.Event | None:
    try:
        return decode_entry(fields)
    except UndecodableEvent:
        return None  # quarantined by the log's readers
