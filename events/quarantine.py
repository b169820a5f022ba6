"""Quarantine: how a log entry that cannot be decoded is kept for inspection.

Every reader of the log skips such an entry alike and records it in the namespace's quarantine
hash (`events.store`); the record keeps the entry's raw fields, bounded, whatever bytes they
hold, so that recording it can never fail the way decoding it did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from events.codec import DATA_FIELD

__all__ = ["KEEP_BYTES", "Quarantined", "quarantine_record", "read_records"]

KEEP_BYTES = 64 * 1024  # of a quarantined entry's fields, names and values together
_MAX_REASON = 300


class Quarantined(msgspec.Struct, frozen=True, kw_only=True):
    """A log entry that could not be decoded: skipped by every reader, kept for inspection.

    The entry's fields are kept as raw bytes, at most `KEEP_BYTES` of them in all (`truncated`
    says when more were cut); those whose name is not UTF-8 are kept in `foreign_fields`."""

    stream_id: str
    size: int  # bytes of the entry's data field (0 if it had none)
    reason: str
    fields: dict[str, bytes] = {}
    foreign_fields: list[tuple[bytes, bytes]] = []
    truncated: bool = False


def _text_lossy(value: bytes | str) -> str:
    """Text of bytes that may not be UTF-8 (undecodable bytes shown as `\\xNN`)."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _id_order(stream_id: str) -> tuple[int, int]:
    """The sort key of a stream id (anything else sorts first)."""
    ms, _, seq = stream_id.partition("-")
    return (int(ms), int(seq or 0)) if ms.isdigit() and (not seq or seq.isdigit()) else (-1, -1)


def quarantine_record(stream_id: str, fields: Mapping[bytes, bytes], reason: str) -> Quarantined:
    """The quarantine record of an entry: its raw fields, at most KEEP_BYTES of them."""
    named: dict[str, bytes] = {}
    foreign: list[tuple[bytes, bytes]] = []
    budget = KEEP_BYTES
    truncated = False
    for raw_name, raw_value in fields.items():
        name = bytes(raw_name)[:budget]
        value = bytes(raw_value)[: budget - len(name)]
        truncated = truncated or len(name) < len(raw_name) or len(value) < len(raw_value)
        budget -= len(name) + len(value)
        try:
            named[name.decode()] = value
        except UnicodeDecodeError:
            foreign.append((name, value))
        if budget <= 0:
            truncated = truncated or len(named) + len(foreign) < len(fields)
            break
    return Quarantined(
        stream_id=stream_id,
        size=len(fields.get(DATA_FIELD, b"")),
        reason=reason[:_MAX_REASON],
        fields=named,
        foreign_fields=foreign,
        truncated=truncated,
    )


def read_records(raw: Mapping[Any, bytes]) -> list[Quarantined]:
    """The records of the quarantine hash, in log order (one that cannot be read is listed
    with that as its reason)."""
    records = []
    for key, value in raw.items():
        try:
            records.append(msgspec.msgpack.decode(value, type=Quarantined))
        except (msgspec.MsgspecError, RecursionError):
            sid = _text_lossy(key)
            records.append(Quarantined(stream_id=sid, size=0, reason="unreadable record"))
    return sorted(records, key=lambda r: _id_order(r.stream_id))
