"""Snapshots (checkpoints) of the fleet-state projection, so a restart replays only the tail.

A snapshot is an envelope (format version, the projection's shape fingerprint, stream position,
sha256 of the body) around the msgpack encoding of a `FleetState`. The newest `keep` snapshots
are kept; the log is never trimmed past the oldest of them. A snapshot that is unusable (other
version or shape, bad checksum, undecodable) is skipped with a warning and an older one, or a
full replay, is used instead.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import structlog

from events.state import FleetState, dec_hook, enc_hook, paused_gc, schema_hook
from events.store import EventStore, redis_errors

__all__ = ["SNAPSHOT_FORMAT", "SnapshotEnvelope", "SnapshotStore", "state_fingerprint"]

# 2: finished tasks leave the hot state (events.projection_eviction); 3: their map and the
# idempotency keys' are packed (events.packed_map)
SNAPSHOT_FORMAT = 3
log = structlog.get_logger("events.snapshot")


def state_fingerprint() -> str:
    """A digest of the FleetState schema: any change to the projection's shape changes it."""
    schema = msgspec.json.encode(msgspec.json.schema(FleetState, schema_hook=schema_hook))
    return hashlib.sha256(schema).hexdigest()[:16]


_FINGERPRINT = state_fingerprint()


class SnapshotEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """What is stored under a snapshot key."""

    format: int
    fingerprint: str
    position: str
    event_count: int
    checksum: str  # sha256 hex of `body`
    body: bytes  # msgpack FleetState


def _warn(position: str, reason: str) -> None:
    log.warning("snapshot unusable, ignored", position=position, reason=reason)


def _id_key(position: str) -> tuple[int, int]:
    ms, _, seq = position.partition("-")
    return int(ms), int(seq or 0)


class SnapshotStore:
    """Save and load snapshots of one namespace's projection."""

    def __init__(self, store: EventStore, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep at least one snapshot")
        self.store = store
        self.keep = keep
        self._encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
        self._state_decoder = msgspec.msgpack.Decoder(FleetState, dec_hook=dec_hook)
        self._envelope_decoder = msgspec.msgpack.Decoder(SnapshotEnvelope)

    def positions(self) -> list[str]:
        """Positions of the kept snapshots, oldest first."""
        with redis_errors("list snapshots"):
            raw: Any = self.store.client.zrange(self.store.keys.snapshots, 0, -1)
        return sorted((p.decode() for p in raw), key=_id_key)

    def save(self, state: FleetState) -> str:
        """Store a snapshot of `state` at `state.position`; drop those beyond `keep`."""
        body = self._encoder.encode(state)
        envelope = SnapshotEnvelope(
            format=SNAPSHOT_FORMAT,
            fingerprint=_FINGERPRINT,
            position=state.position,
            event_count=state.event_count,
            checksum=hashlib.sha256(body).hexdigest(),
            body=body,
        )
        keys = self.store.keys
        with redis_errors("save snapshot"):
            pipe = self.store.client.pipeline(transaction=True)
            pipe.set(keys.snapshot(state.position), self._encoder.encode(envelope))
            pipe.zadd(keys.snapshots, {state.position: _id_key(state.position)[0]})
            pipe.execute()
        old = self.positions()[: -self.keep]
        if old:
            with redis_errors("prune snapshots"):
                pipe = self.store.client.pipeline(transaction=True)
                pipe.delete(*(keys.snapshot(p) for p in old))
                pipe.zrem(keys.snapshots, *old)
                pipe.execute()
        return state.position

    def load_latest(self, until: str | None = None) -> FleetState | None:
        """The newest usable snapshot (at or before stream id `until`), or None."""
        candidates = self.positions()
        if until is not None:
            limit = _id_key(until)
            candidates = [p for p in candidates if _id_key(p) <= limit]
        for position in reversed(candidates):
            state = self.load(position)
            if state is not None:
                return state
        return None

    def load(self, position: str) -> FleetState | None:
        """The snapshot at `position` if it is usable; else None and a warning."""
        with redis_errors("load snapshot"):
            raw: Any = self.store.client.get(self.store.keys.snapshot(position))
        if raw is None:
            _warn(position, "missing")
            return None
        try:
            envelope = self._envelope_decoder.decode(raw)
        except msgspec.MsgspecError as e:
            _warn(position, f"undecodable envelope: {e}")
            return None
        if envelope.format != SNAPSHOT_FORMAT or envelope.fingerprint != _FINGERPRINT:
            _warn(position, f"incompatible version {envelope.format}")
            return None
        if hashlib.sha256(envelope.body).hexdigest() != envelope.checksum:
            _warn(position, "checksum mismatch")
            return None
        try:
            with paused_gc():
                state = self._state_decoder.decode(envelope.body)
        except msgspec.MsgspecError as e:
            _warn(position, f"undecodable state: {e}")
            return None
        if state.position != envelope.position:
            _warn(position, "position mismatch")
            return None
        return state
