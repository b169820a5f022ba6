"""Forge's event log: typed events, their codec, the fleet-state projection and the store.

`events` is the lowest layer: it never imports `actors` or `forge`.
"""

from __future__ import annotations

from events.codec import decode, decode_entry, encode, encode_entry, register_upcaster
from events.consumer import Delivery, GroupConsumer
from events.errors import (
    AppendConflict,
    ForgeError,
    StoreError,
    StoreUnavailable,
    TaskConflict,
    UndecodableEvent,
)
from events.keys import Keys
from events.projection import apply, apply_all, apply_entries
from events.replay import ReplayReport, replay
from events.snapshot import SnapshotStore
from events.state import (
    AgentState,
    AttemptRecord,
    BreakerState,
    FleetState,
    NodeState,
    TaskState,
    to_builtins,
)
from events.store import EventStore, IndexEntry, LogEntry, Quarantined
from events.transitions import TASK_STATES, TERMINAL_STATES, TRANSITIONS
from events.types import *  # noqa: F403 - the event catalogue is the package's vocabulary
from events.types import __all__ as _types_all

__all__ = [  # noqa: PLE0604 - extended with the catalogue below
    "TASK_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AgentState",
    "AppendConflict",
    "AttemptRecord",
    "Delivery",
    "EventStore",
    "GroupConsumer",
    "IndexEntry",
    "Keys",
    "LogEntry",
    "Quarantined",
    "ReplayReport",
    "SnapshotStore",
    "BreakerState",
    "FleetState",
    "ForgeError",
    "NodeState",
    "StoreError",
    "StoreUnavailable",
    "TaskConflict",
    "TaskState",
    "UndecodableEvent",
    "apply",
    "apply_all",
    "apply_entries",
    "replay",
    "decode",
    "decode_entry",
    "encode",
    "encode_entry",
    "register_upcaster",
    "to_builtins",
    *_types_all,
]
