"""The event store: one Redis Stream per namespace, plus a derived task index.

Every append goes through one Lua script (`lua/append.lua`) that `XADD`s the events and updates
the task index (`state|attempt|epoch` per task) with the transition rules of
`events.transitions`, so the index always agrees with the projection. Conditional appends
(`claim`, `complete`, `append_if`) check the index first and raise `TaskConflict` when it has
moved: this fences out stale writers (an old attempt, an old daemon epoch, another node).
`append_groups` makes many of them in one round trip, each group fenced on its own, and can
send back what others appended since the writer's position, so that it need not read.

Reading: `read_range`/`read_from` return decoded entries; `pages` and `event_pages` (replay's)
are the fast path (`events.paging`); `tail` blocks on `XREAD`. An entry that
cannot be decoded is recorded in the quarantine hash (`events.quarantine`) and skipped.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import itertools
import os
import secrets
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
import redis
from redis.commands.core import Script

from events.append_script import NEW_TASKS, Records, group_args
from events.codec import decode_entry
from events.errors import StoreError, StoreUnavailable, TaskConflict, UndecodableEvent
from events.keys import Keys
from events.paging import DEFAULT_PAGE, EventPage, SlowDecode, event_pages, triple_pages
from events.quarantine import KEEP_BYTES, Quarantined, quarantine_record, read_records
from events.state import FleetState
from events.types import Event, TaskAssigned

__all__ = [
    "DEFAULT_PAGE",
    "KEEP_BYTES",
    "Appended",
    "EventPage",
    "EventStore",
    "IndexEntry",
    "LogEntry",
    "Quarantined",
    "Records",
    "entry_fields",
    "load_script",
    "redis_errors",
]

DEFAULT_GAP = 1000  # entries of others an append sends back at most (else the writer reads)
_ENCODER = msgspec.msgpack.Encoder()


class LogEntry(NamedTuple):
    """One decoded log entry: its stream id and its event."""

    id: str
    event: Event


class IndexEntry(NamedTuple):
    """A task's entry in the derived index."""

    state: str
    attempt: int | None
    epoch: int | None

    @classmethod
    def parse(cls, raw: bytes | str) -> IndexEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        state, attempt, epoch = text.split("|")
        return cls(state, int(attempt) if attempt else None, int(epoch) if epoch else None)


class Appended(NamedTuple):
    """What `EventStore.append_groups` did: the id of the entry last before its appends
    ("0-0" for an empty log), the entries others appended since the caller's position (None
    if not asked for, or too many), and per group its new ids or the conflict that refused it."""

    prev: str
    entries: list[LogEntry] | None
    results: list[list[str] | TaskConflict]


@contextlib.contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Translate redis-py errors into the store's errors."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        raise StoreUnavailable(f"{action}: Redis unavailable: {e}") from e
    except redis.RedisError as e:
        raise StoreError(f"{action}: {e}") from e


def load_script(name: str) -> str:
    """The text of one of the log's Lua scripts (events/lua/NAME)."""
    return importlib.resources.files("events").joinpath("lua", name).read_text("utf-8")


def entry_fields(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A stream entry's fields from the flat list a script returns them as."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventStore:
    """The event log of one namespace on a Redis server (a client with decode_responses off)."""

    def __init__(self, client: redis.Redis, namespace: str = "default") -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise StoreError("the event store needs a Redis client with decode_responses=False")
        self.client = client
        self.keys = Keys.for_namespace(namespace)
        self._append: Script = client.register_script(load_script("append.lua"))
        self._append_keys = [self.keys.log, self.keys.index, self.keys.idempotency]
        # each append carries a token (growing; a key per writer thread), so that one sent
        # again after a lost reply (redis-py retries a command on a timeout or a dropped
        # connection) is answered with its first results instead of being appended twice
        self._writer = secrets.token_hex(8)
        self._tokens = itertools.count(1)
        self._threads = threading.local()

    # -- appending ---------------------------------------------------------------------

    def append(self, event: Event) -> str:
        """Append one event; returns its stream id."""
        return self.append_batch((event,))[0]

    def append_batch(self, events: Iterable[Event]) -> list[str]:
        """Append events in order, atomically and in one round trip; returns their ids."""
        return self.append_after(events)[1]

    def append_after(self, events: Iterable[Event]) -> tuple[str, list[str]]:
        """Like `append_batch`, and also return the id of the entry that was last before the
        batch ("0-0" for an empty log): a writer whose last read position equals it knows that
        nobody else appended in between."""
        events = list(events)
        if not events:
            return self.last_id() or "0-0", []
        appended = self.append_groups([Records(events)])
        ids = appended.results[0]
        assert isinstance(ids, list)  # an unconditional group is never refused
        return appended.prev, ids

    def append_if(
        self, task_id: str, expect: Mapping[str, Any], event: Event, *extra: Event
    ) -> str:
        """Append `event` only if task `task_id`'s index entry matches `expect` and the event's
        transition is legal from it; else raise TaskConflict (with the entry found).

        `expect` may hold `state` (a state or a collection of states; "" is an unknown task),
        `attempt` and `epoch`. `extra` events (that touch no task) are appended after `event`
        in the same atomic step. Returns the id of `event`."""
        return self.append_if_after(task_id, expect, event, *extra)[1][0]

    def append_if_after(
        self, task_id: str, expect: Mapping[str, Any], event: Event, *extra: Event
    ) -> tuple[str, list[str]]:
        """`append_if`, returning the previous last id and every new id (see `append_after`)."""
        appended = self.append_groups([Records((event, *extra), task_id, expect)])
        result = appended.results[0]
        if isinstance(result, TaskConflict):
            raise result
        return appended.prev, result

    def append_groups(
        self, groups: Sequence[Records], after: str | None = None, most: int = DEFAULT_GAP
    ) -> Appended:
        """Append groups of events in order, in one round trip: an unconditional group always,
        a conditional one (with a `task_id`) only if that task's index entry matches its
        `expect` and its first event's transition is legal (see `append_if`); each group is
        fenced on its own, so one refused holds back no other.

        With `after` (the caller's position), the entries others appended between it and
        these appends come back too (decoded; None if there are more than `most`)."""
        args: list[Any] = ["" if after is None else after, most, next(self._tokens)]
        for group in groups:
            group_args(group, args)
        with redis_errors("append"):
            reply = self._append(keys=self._call_keys(), args=args)
        prev, raw_entries, *raw_results = reply
        entries = None
        if after is not None and isinstance(raw_entries, list):
            entries = self._decode_all(
                [(entry_id, entry_fields(fields)) for entry_id, fields in raw_entries]
            )
        results: list[list[str] | TaskConflict] = []
        for group, raw in zip(groups, raw_results, strict=True):
            if raw[0] == 1:
                results.append([i.decode() for i in raw[1:]])
            elif group.task_id == NEW_TASKS:  # refused: the id of a task known already
                results.append(TaskConflict(raw[1].decode(), {"state": "-"}, None))
            else:
                current = IndexEntry.parse(raw[1])._asdict() if raw[1] else None
                results.append(TaskConflict(group.task_id or "", dict(group.expect), current))
        return Appended(prev.decode(), entries, results)

    def _call_keys(self) -> list[str]:
        """The append script's keys, with this writer's: one per process and thread (a
        forked child copies the store, and the tokens it has drawn)."""
        pid = os.getpid()
        cached: tuple[int, list[str]] | None = getattr(self._threads, "keys", None)
        if cached is None or cached[0] != pid:
            writer = self.keys.calls(f"{self._writer}-{pid}-{threading.get_ident()}")
            cached = self._threads.keys = (pid, [*self._append_keys, writer])
        return cached[1]

    def claim(self, task_id: str, event: TaskAssigned, expected_state: str = "queued") -> str:
        """Append a TaskAssigned only if the task is still in `expected_state`."""
        return self.append_if(task_id, {"state": expected_state}, event)

    def complete(self, task_id: str, attempt: int, epoch: int, event: Event) -> str:
        """Append an event of a running attempt (started, completed, failed) only if that
        attempt, under that epoch, still owns the task."""
        expect = {"state": ("assigned", "running"), "attempt": attempt, "epoch": epoch}
        return self.append_if(task_id, expect, event)

    # -- the derived index -------------------------------------------------------------

    def task_index(self, task_id: str) -> IndexEntry | None:
        """The task's entry in the derived index, or None if the task is unknown."""
        with redis_errors("read index"):
            raw: Any = self.client.hget(self.keys.index, task_id)
        return IndexEntry.parse(raw) if raw is not None else None

    def append_new(self, events: Sequence[Event]) -> list[str] | None:
        """Append a batch of submissions (and events of no task) whole, in one round trip, only
        if none of the tasks it submits is known to the log already: their ids, else None (a
        task id drawn again by chance: draw new ones and append again)."""
        result = self.append_groups([Records(events, NEW_TASKS)]).results[0]
        return None if isinstance(result, TaskConflict) else result

    def index_entries(self) -> dict[str, IndexEntry]:
        """The whole derived index."""
        with redis_errors("read index"):
            raw: Any = self.client.hgetall(self.keys.index)
        return {_text(k): IndexEntry.parse(v) for k, v in raw.items()}

    def adopt_into_index(self, task_id: str, state: str, attempt: int, epoch: int | None) -> bool:
        """Give a task that the log holds but the index lacks (an entry appended by a writer
        that bypassed the append script) its index entry, derived from the log; only if it
        still has none. True if the entry was written."""
        value = f"{state}|{attempt}|{'' if epoch is None else epoch}"
        with redis_errors("repair index"):
            return bool(self.client.hsetnx(self.keys.index, task_id, value))

    def rebuild_index(self, state: FleetState) -> int:
        """Rewrite the derived index from `state` (a full replay); run it with no writers."""
        index = {
            tid: f"{t.state}|{t.attempt}|{'' if t.epoch is None else t.epoch}"
            for tid, t in state.tasks.items()
        }
        with redis_errors("rebuild index"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(self.keys.index, self.keys.idempotency)
            if index:
                pipe.hset(self.keys.index, mapping=index)  # type: ignore[arg-type]
            if state.idempotency:
                keys = dict(state.idempotency.items())
                pipe.hset(self.keys.idempotency, mapping=keys)  # type: ignore[arg-type]
            pipe.execute()
        return len(index)

    # -- reading -----------------------------------------------------------------------

    def length(self) -> int:
        with redis_errors("read length"):
            return int(self.client.xlen(self.keys.log))

    def last_id(self) -> str | None:
        """The id of the newest entry, or None for an empty log."""
        with redis_errors("read"):
            newest: Any = self.client.xrevrange(self.keys.log, count=1)
        return _text(newest[0][0]) if newest else None

    def read_range(
        self, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[LogEntry]:
        """Decoded entries with ids in [start, end] (prefix an id with '(' to exclude it).

        With a `count`, fewer than `count` entries come back only when the range is exhausted:
        quarantined entries do not count, so a caller that pages until a short page never
        stops early in front of an undecodable entry."""
        out: list[LogEntry] = []
        while True:
            wanted = None if count is None else count - len(out)
            with redis_errors("read"):
                raw: Any = self.client.xrange(self.keys.log, start, end, count=wanted)
            out += self._decode_all(raw)
            if wanted is None or len(raw) < wanted or len(out) == count:
                return out
            start = "(" + _text(raw[-1][0])

    def read_from(self, position: str, count: int | None = None) -> list[LogEntry]:
        """Decoded entries after `position` ("0-0" for all)."""
        return self.read_range(f"({position}", "+", count)

    def pages(
        self,
        start: str = "-",
        end: str = "+",
        page_size: int = DEFAULT_PAGE,
        quarantined: list[Quarantined] | None = None,
    ) -> Iterator[Sequence[tuple[str, int, Event]]]:
        """The log as pages of (id, schema version, event) (`events.paging`); entries that
        cannot be decoded are quarantined (and added to `quarantined`)."""
        slow = self._slow_decoder(quarantined)
        with redis_errors("read"):
            yield from triple_pages(self.client, self.keys.log, (start, end), page_size, slow)

    def event_pages(
        self,
        start: str = "-",
        end: str = "+",
        page_size: int = DEFAULT_PAGE,
        quarantined: list[Quarantined] | None = None,
    ) -> Iterator[EventPage]:
        """Like `pages`, without the ids but each page's last (what replay needs): faster."""
        slow = self._slow_decoder(quarantined)
        with redis_errors("read"):
            yield from event_pages(self.client, self.keys.log, (start, end), page_size, slow)

    def _slow_decoder(self, quarantined: list[Quarantined] | None) -> SlowDecode:
        """Decodes one entry of a page the general way, quarantining it if it cannot be."""

        def decode(entry_id: bytes, fields: Any) -> Event | None:
            pairs = fields if isinstance(fields, dict) else entry_fields(fields)
            decoded = self._decode_all([(entry_id, pairs)], quarantined)
            return decoded[0].event if decoded else None

        return decode

    def read_raw(
        self, after: str, count: int, block_ms: int | None = None
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        """Entries after `after` as (id, raw fields), at most `count`, waiting up to `block_ms`
        for the first (`XREAD`): undecoded, so that a reader decodes only those it needs
        (`events.codec.decode_entry`)."""
        command: list[Any] = ["XREAD", "COUNT", count]
        if block_ms is not None:
            command += ["BLOCK", block_ms]
        pool = self.client.connection_pool
        with redis_errors("read"):
            conn: Any = pool.get_connection()
            try:
                conn.send_command(*command, "STREAMS", self.keys.log, after)
                reply: Any = conn.read_response()
            except BaseException:
                conn.disconnect()  # an unread reply must not reach the next user
                raise
            finally:
                pool.release(conn)
        if not reply:
            return []
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3
        return [(_text(entry_id), entry_fields(fields)) for entry_id, fields in entries]

    def tail(
        self,
        after: str = "$",
        block_ms: int = 1000,
        count: int = 1000,
        stop: threading.Event | None = None,
    ) -> Iterator[LogEntry]:
        """Yield new entries after `after` ("$": from now) as they arrive, blocking in XREAD
        for up to `block_ms` at a time, until `stop` is set."""
        last = after if after != "$" else (self.last_id() or "0-0")
        while stop is None or not stop.is_set():
            with redis_errors("tail"):
                reply: Any = self.client.xread({self.keys.log: last}, count=count, block=block_ms)
            for _key, raw in reply or ():
                if raw:
                    last = _text(raw[-1][0])
                yield from self._decode_all(raw)

    # -- quarantine --------------------------------------------------------------------

    def _decode_all(
        self,
        raw: Sequence[tuple[Any, Mapping[bytes, bytes]]],
        quarantined: list[Quarantined] | None = None,
    ) -> list[LogEntry]:
        out: list[LogEntry] = []
        for entry_id, fields in raw:
            sid = _text(entry_id)
            try:
                out.append(LogEntry(sid, decode_entry(fields)))
            except UndecodableEvent as e:
                record = self._quarantine(sid, fields, str(e))
                if quarantined is not None:
                    quarantined.append(record)
        return out

    def _quarantine(
        self, stream_id: str, fields: Mapping[bytes, bytes], reason: str
    ) -> Quarantined:
        record = quarantine_record(stream_id, fields, reason)
        with redis_errors("quarantine"):
            self.client.hset(self.keys.quarantine, stream_id, _ENCODER.encode(record))
        return record

    def quarantined(self) -> list[Quarantined]:
        """Every entry quarantined so far, in log order (a record that cannot be read is
        listed with that as its reason)."""
        with redis_errors("read quarantine"):
            raw: Any = self.client.hgetall(self.keys.quarantine)
        return read_records(raw)

    # -- trimming ----------------------------------------------------------------------

    def trim_before_oldest_snapshot(self) -> int:
        """Trim log entries older than the oldest kept snapshot; returns how many went."""
        with redis_errors("trim"):
            oldest: Any = self.client.zrange(self.keys.snapshots, 0, 0)
            if not oldest:
                return 0
            position = _text(oldest[0])
            return int(self.client.xtrim(self.keys.log, minid=position, approximate=False))
