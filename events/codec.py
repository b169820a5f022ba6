"""Encoding events to stream entries and back, with upcasting of older schemas.

A stream entry has two fields: `d`, the msgpack encoding of the event (its tag in the `type`
field), and `v`, the schema version of the event's class when it was written. Decoding takes
the fast path (one typed msgspec decode) when the stored version is current; an older entry is
decoded to plain data, passed through the registered upcasters one version at a time, and then
converted. One module-level encoder and decoder serve the whole process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from events.errors import UndecodableEvent
from events.types import EVENT_TYPES, AnyEvent, Event

__all__ = [
    "DATA_FIELD",
    "VERSION_BYTES",
    "VERSION_FIELD",
    "Upcaster",
    "decode",
    "decode_entry",
    "encode",
    "encode_entry",
    "register_upcaster",
    "upcast",
]

DATA_FIELD = b"d"
VERSION_FIELD = b"v"

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the plain data of an event at schema version n into its data at version n + 1."""

_ENCODER = msgspec.msgpack.Encoder()
_DECODER: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(AnyEvent)
_RAW_DECODER = msgspec.msgpack.Decoder(dict[str, Any])
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}
_MAX_VERSION_DIGITS = 3
VERSION_BYTES = {cls: str(cls.schema).encode() for cls in EVENT_TYPES.values()}
"""The stored `v` field of each event class's current schema."""


def register_upcaster(tag: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Decorator: register the upcaster of event `tag` from `from_version` to the next version."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(tag, from_version)] = fn
        return fn

    return register


def encode(event: Event) -> bytes:
    """The msgpack encoding of one event."""
    return _ENCODER.encode(event)


def encode_entry(event: Event) -> dict[bytes, bytes]:
    """The stream entry fields of one event."""
    return {DATA_FIELD: _ENCODER.encode(event), VERSION_FIELD: VERSION_BYTES[type(event)]}


def upcast(data: dict[str, Any], version: int | None) -> Event:
    """Bring the plain data of an event written at `version` (None: current) up to date."""
    tag = data.get("type")
    cls = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise UndecodableEvent(f"unknown event type {tag!r:.80}")
    version = cls.schema if version is None else version
    if version > cls.schema:
        raise UndecodableEvent(f"{tag} schema {version} is newer than this Forge ({cls.schema})")
    while version < cls.schema:
        step = _UPCASTERS.get((str(tag), version))
        if step is None:
            raise UndecodableEvent(f"no upcaster for {tag} from schema {version}")
        try:
            data = step(dict(data))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UndecodableEvent(f"{tag} schema {version} cannot be upcast: {e!r}") from e
        version += 1
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as e:
        raise UndecodableEvent(f"invalid {tag}: {e}") from e


def decode(payload: bytes, version: int | None = None) -> Event:
    """Decode one event payload written at schema `version` (None: assume current)."""
    try:
        event: Event | None = _DECODER.decode(payload)
    except msgspec.ValidationError:
        event = None  # maybe an older shape: the slow path below tells
    except (msgspec.DecodeError, RecursionError, ValueError) as e:  # ValueError: bad UTF-8
        raise UndecodableEvent(f"corrupt payload: {e}") from e
    if event is not None and (version is None or version == event.schema):
        return event
    try:
        data = _RAW_DECODER.decode(payload)
    except (msgspec.MsgspecError, RecursionError, ValueError) as e:
        raise UndecodableEvent(f"corrupt payload: {e}") from e
    return upcast(data, version)


def decode_entry(fields: Mapping[bytes, bytes]) -> Event:
    """Decode the fields of one stream entry; raises UndecodableEvent if that is impossible,
    whatever the entry holds (any bytes as field names or values, missing or extra fields), and
    never anything else."""
    payload = fields.get(DATA_FIELD)
    if payload is None:
        raise UndecodableEvent("entry has no event data field")
    raw_version = fields.get(VERSION_FIELD, b"1")
    if not (0 < len(raw_version) <= _MAX_VERSION_DIGITS and raw_version.isdigit()):
        # ASCII digits only: every reader must agree on what it skips
        raise UndecodableEvent(f"bad schema version {raw_version[:32]!r}")
    return decode(payload, int(raw_version))


# -- upcasters -----------------------------------------------------------------------------


@register_upcaster("task.usage", 1)
def _task_usage_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 had `tokens` (input and output together) and `cost`; v2 splits and renames them."""
    data["input_tokens"] = data.pop("tokens", 0)
    data["output_tokens"] = 0
    data["cost_usd"] = data.pop("cost", 0.0)
    return data
