"""Reading the log a page at a time: the fast path of replay and of `EventStore.pages`.

Each page is read by one script call (`lua/read_page.lua`) that sends the page back as ONE
msgpack document, decoded by the client in one call. Why not a plain XRANGE: redis-py builds
about seven Python objects per entry from its reply, more than the decode and the fold together
cost; the script does that work on the server, whose core is otherwise idle during a replay.
The next page is asked for before the current one is decoded, so the server reads it meanwhile.

A page whose typed decode fails, or whose entries carry a schema version other than their
event's (an older schema to upcast), is read again entry by entry by the caller's `SlowRead`,
which quarantines what cannot be decoded: pages with the same events come out either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, NamedTuple

import msgspec

from events.types import EVENT_TYPES, AnyEvent, Event

__all__ = ["DEFAULT_PAGE", "EventPage", "SlowRead", "event_pages", "triple_pages"]

DEFAULT_PAGE = 1000
"""Entries per page. Measured on a 1M-entry log: the script's cost per entry rises with bigger
pages (1.4 us at 1000, 2.3 us at 4000: Lua's tables and garbage), and smaller pages add round
trips; 800 to 1200 were fastest."""

_TRIPLES = msgspec.msgpack.Decoder(list[tuple[str, int, AnyEvent]])
_PAIRS = msgspec.msgpack.Decoder(list[int | AnyEvent])
_ERRORS = (msgspec.MsgspecError, RecursionError, ValueError, KeyError)
# the script sends versions 0 to 127 only (0: unusable); 255 never matches, so an event type
# with a larger schema always takes the slow path
_SCHEMA_OF = {cls: cls.schema if cls.schema <= 127 else 255 for cls in EVENT_TYPES.values()}

Triples = Sequence[tuple[str, int, Event]]
SlowRead = Callable[[str, str], Triples]
"""Reads the entries in [start, end] one by one: (id, schema version, event) of those that
decode, quarantining the others."""


class EventPage(NamedTuple):
    """One page as replay folds it: its events and the id of the last of them."""

    last: str
    events: Sequence[Event]


def _as_triples(blob: bytes) -> Triples:
    """A page of [id, version, event] triples; ValueError if a version is not current."""
    page = _TRIPLES.decode(blob)
    schema_of = _SCHEMA_OF.__getitem__
    if [version for _, version, _ in page] != [schema_of(type(e)) for *_, e in page]:
        raise ValueError("older schema in page")
    return page


def _as_events(blob: bytes) -> list[Event]:
    """The events of a flat page (version, event, ...); ValueError if a version is not
    current, KeyError if the entries are not pairs of a version and an event."""
    flat: list[Any] = _PAIRS.decode(blob)
    events = flat[1::2]
    if list(map(_SCHEMA_OF.__getitem__, map(type, events))) != flat[0::2]:
        raise ValueError("older schema in page")
    return events


def triple_pages(
    client: Any, sha: str, key: str, bounds: tuple[str, str], page_size: int, slow: SlowRead
) -> Iterator[Triples]:
    """The entries in `bounds` (XRANGE's start and end) as pages of (id, schema version,
    event); empty pages (all quarantined) are left out."""
    with contextlib.closing(_replies(client, sha, key, bounds, page_size, "ids")) as replies:
        for start, last, blob in replies:
            try:
                page = _as_triples(blob)
            except _ERRORS:
                page = slow(start, last)
            if page:
                yield page


def event_pages(
    client: Any, sha: str, key: str, bounds: tuple[str, str], page_size: int, slow: SlowRead
) -> Iterator[EventPage]:
    """The events in `bounds` a page at a time, with the id of each page's last event; empty
    pages (all quarantined) are left out."""
    with contextlib.closing(_replies(client, sha, key, bounds, page_size, "events")) as replies:
        for start, last, blob in replies:
            try:
                page = EventPage(last, _as_events(blob))
            except _ERRORS:
                triples = slow(start, last)
                page = EventPage(triples[-1][0] if triples else "", [e for *_, e in triples])
            if page.events:
                yield page


def _replies(
    client: Any, sha: str, key: str, bounds: tuple[str, str], page_size: int, shape: str
) -> Generator[tuple[str, str, bytes], None, None]:
    """(start bound, last id, page document) of each page the script sends back; the next
    page is asked for before this one is handed over."""
    start, end = bounds
    conn = client.connection_pool.get_connection()
    pending = False

    def request(start: str) -> None:
        nonlocal pending
        conn.send_command("EVALSHA", sha, 1, key, start, end, page_size, shape)
        pending = True

    try:
        request(start)
        while pending:
            raw_count, last_raw, blob = conn.read_response()
            pending = False
            last = last_raw.decode()
            if raw_count == page_size:  # the server reads the next page meanwhile
                request("(" + last)
            yield start, last, blob
            start = "(" + last
    finally:
        if pending:
            conn.disconnect()  # an unread reply must not reach the next user
        client.connection_pool.release(conn)
