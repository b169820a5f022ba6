"""Every Redis key name Forge's event log uses, in one place.

All keys of a namespace share the hash tag `{ns}`, so on Redis Cluster they live in one slot and
the Lua scripts may touch several of them atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PREFIX", "Keys"]

PREFIX = "forge"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one namespace."""

    namespace: str
    log: str  # the event stream
    index: str  # hash: task id -> "state|attempt|epoch" (derived, rebuildable)
    idempotency: str  # hash: idempotency key -> task id (derived, rebuildable)
    quarantine: str  # hash: stream id -> msgpack Quarantined record
    snapshots: str  # sorted set: snapshot key by stream position (ms part) -> newest last
    snapshot_prefix: str  # string keys holding one snapshot each
    consumer_dead: str  # prefix of the dead-letter stream of each consumer group
    heartbeat: str  # string: a daemon's heartbeat from before nodes (read, never written)
    node_heartbeat_prefix: str  # strings: each node's heartbeat (JSON, with an expiry)
    lease_prefix: str  # strings: each node's lease (its epoch, with an expiry of the lease TTL)
    epochs: str  # string: the last epoch handed to a starting node (never below the log's)
    node_ids: str  # set: every node id that ever started here (to find their heartbeats)
    task_events_prefix: str  # sorted sets: one task's stream ids (derived, rebuildable)
    task_events_position: str  # string: the last stream id the per-task sets cover
    finished_summaries: str  # hash: finished task id -> msgpack TaskState (derived)
    calls_prefix: str  # strings: each writer's last append (its token and results, expiring)

    @classmethod
    def for_namespace(cls, namespace: str) -> Keys:
        if not namespace or any(c in namespace for c in "{}: \n"):
            raise ValueError(f"invalid namespace {namespace!r}: no braces, colons or spaces")
        base = f"{PREFIX}:{{{namespace}}}"
        return cls(
            namespace=namespace,
            log=f"{base}:log",
            index=f"{base}:index",
            idempotency=f"{base}:idempotency",
            quarantine=f"{base}:quarantine",
            snapshots=f"{base}:snapshots",
            snapshot_prefix=f"{base}:snapshot:",
            consumer_dead=f"{base}:dead:",
            heartbeat=f"{base}:daemon",
            node_heartbeat_prefix=f"{base}:daemon:",
            lease_prefix=f"{base}:lease:",
            epochs=f"{base}:epoch",
            node_ids=f"{base}:nodes",
            task_events_prefix=f"{base}:task:",
            task_events_position=f"{base}:task-index",
            finished_summaries=f"{base}:finished",
            calls_prefix=f"{base}:call:",
        )

    def snapshot(self, position: str) -> str:
        """The key of the snapshot taken at stream position `position`."""
        return f"{self.snapshot_prefix}{position}"

    def node_heartbeat(self, node_id: str) -> str:
        """The heartbeat key of node `node_id`."""
        return f"{self.node_heartbeat_prefix}{node_id}"

    def lease(self, node_id: str) -> str:
        """The lease key of node `node_id`."""
        return f"{self.lease_prefix}{node_id}"

    def task_events(self, task_id: str) -> str:
        """The sorted set of the stream ids of task `task_id`'s events."""
        return f"{self.task_events_prefix}{task_id}"

    def calls(self, writer: str) -> str:
        """The key holding writer `writer`'s last append (see `events/lua/append.lua`)."""
        return f"{self.calls_prefix}{writer}"

    def dead_letters(self, group: str) -> str:
        """The dead-letter stream of consumer group `group`."""
        return f"{self.consumer_dead}{group}"
