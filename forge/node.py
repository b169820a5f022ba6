"""What a daemon keeps up beside the log while it runs: its heartbeat, its node lease, and a
watch on the other nodes' leases.

The keeper thread turns every `LEASE_TICK` seconds: it renews this node's lease, publishes the
heartbeat every `HEARTBEAT_INTERVAL` seconds (who the node is, and a digest of its live state
at a log position, which `forge events verify` compares with a replay), and reads the leases of
the other nodes the log says run: one found gone is reported to the orchestrator, which records
the node lost and requeues its attempts (`actors/nodes.py`).

The heartbeat of each node is its own key (with an expiry), so several daemons sharing a
namespace never overwrite each other's; the ids of the nodes that ever started are kept in a
set beside them, to find them.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, cast

import msgspec
import pykka
import redis

from actors.fleet import Fleet
from actors.messages import NodeExpired
from events.keys import Keys
from events.leases import NodeLeases
from events.store import redis_errors
from forge.daemon_process import PidRecord
from forge.log import get_logger
from forge.memory import MemoryKeeper, trim

__all__ = [
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TTL",
    "LEASE_TICK",
    "Heartbeat",
    "NodeKeeper",
    "read_heartbeat",
    "read_heartbeats",
]

HEARTBEAT_INTERVAL = 2.0
HEARTBEAT_TTL = 10
LEASE_TICK = 0.5


class Heartbeat(msgspec.Struct, kw_only=True):
    """What a running daemon publishes about itself."""

    node_id: str
    host: str
    pid: int
    create_time: float
    started_at: float
    updated_at: float
    epoch: int  # this node's epoch
    position: str  # the log position of the digested live state
    event_count: int
    digest: str  # `FleetState.hot_digest` of the live state at `position`
    agents: int = 0  # agents alive on this node
    running: int = 0  # attempts running on this node
    labels: list[str] = []


def _decode(raw: Any) -> Heartbeat | None:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw, type=Heartbeat)
    except msgspec.DecodeError:
        return None


def read_heartbeats(client: redis.Redis, namespace: str) -> list[Heartbeat]:
    """The heartbeats of the namespace's nodes that published one lately, by node id."""
    keys = Keys.for_namespace(namespace)
    with redis_errors("read heartbeats"):
        ids = sorted(
            n.decode() if isinstance(n, bytes) else n for n in client.smembers(keys.node_ids)
        )
        raws = client.mget([keys.node_heartbeat(n) for n in ids]) if ids else []
    return [beat for raw in raws if (beat := _decode(raw)) is not None]


def read_heartbeat(
    client: redis.Redis, namespace: str, node_id: str | None = None
) -> Heartbeat | None:
    """Node `node_id`'s heartbeat, or (None) the most recent of any node's; None when no
    daemon has published one lately."""
    beats = read_heartbeats(client, namespace)
    if node_id is not None:
        beats = [b for b in beats if b.node_id == node_id]
    return max(beats, key=lambda b: b.updated_at, default=None)


class NodeKeeper(threading.Thread):
    """Renews the node's lease, publishes its heartbeat and watches the other nodes' leases,
    for whichever fleet the daemon runs at the time (it restarts a failed one)."""

    def __init__(
        self, fleet: Fleet, client: redis.Redis, me: PidRecord, lease_ttl: float, labels: list[str]
    ) -> None:
        super().__init__(name="forge-node", daemon=True)
        self.fleet = fleet
        self.client = client
        self.keys = Keys.for_namespace(me.namespace)
        self.me = me
        self.lease_ttl = lease_ttl
        self.labels = labels
        self.leases = NodeLeases(client, self.keys)
        self.halt = threading.Event()
        self.ticked = time.monotonic()  # the loop's last turn: `Daemon.alive` checks it
        self.renewed = time.monotonic()  # when the last renewal that succeeded was sent
        self.lost = False  # a renewal found the lease gone: this fleet's epoch is over
        self.others: list[tuple[str, int]] = []  # the other running nodes, at the last look
        self._published = 0.0
        self.memory = MemoryKeeper(release=self._release)
        self.log: Any = get_logger("forge.daemon")

    def attach(self, fleet: Fleet, client: redis.Redis) -> None:
        """Keep up the lease of a new fleet (a restarted orchestrator: a new epoch)."""
        self.fleet, self.client = fleet, client
        self.leases = NodeLeases(client, self.keys)
        self.renewed = time.monotonic()
        self.lost = False

    def lease_age(self) -> float:
        """Seconds since the last renewal that succeeded was sent."""
        return time.monotonic() - self.renewed

    def publish(self) -> None:
        """Publish the heartbeat now (and record the node id among the namespace's)."""
        fleet = self.fleet
        epoch, position, event_count, digest = fleet.digest()
        agents, running, live = fleet.load()
        beat = Heartbeat(
            node_id=self.me.node_id,
            host=socket.gethostname(),
            pid=self.me.pid,
            create_time=self.me.create_time,
            started_at=self.me.started_at,
            updated_at=time.time(),
            epoch=epoch,
            position=position,
            event_count=event_count,
            digest=digest,
            agents=agents,
            running=running,
            labels=self.labels,
        )
        with redis_errors("publish the heartbeat"):
            pipe = self.client.pipeline(transaction=False)
            pipe.sadd(self.keys.node_ids, self.me.node_id)
            pipe.set(
                self.keys.node_heartbeat(self.me.node_id),
                msgspec.json.encode(beat),
                ex=HEARTBEAT_TTL,
            )
            pipe.execute()
        self._published = time.monotonic()
        freed = self.memory.observe(live)  # (after the beat: it may take a few ms)
        if freed is not None:
            self.log.info("memory given back after a backlog", live_tasks=live, freed=freed)

    def _release(self) -> int:
        """Give a drained backlog's memory back: what the task indexer holds first (see
        `Fleet.flush_index`), then `forge.memory.trim`."""
        self.fleet.flush_index(timeout=1.0)
        return trim()

    def renew(self) -> None:
        fleet = self.fleet
        if fleet.epoch is None or self.lost:
            return
        sent = time.monotonic()
        if self.leases.renew(self.me.node_id, fleet.epoch, self.lease_ttl):
            self.renewed = sent
        else:
            self.lost = True
            self.log.error("the node's lease ran out", epoch=fleet.epoch)

    def watch(self) -> None:
        """Report the other nodes whose lease is gone to the orchestrator."""
        fleet = self.fleet
        if fleet.orchestrator is None:
            return
        others = cast(list[tuple[str, int]], fleet.orchestrator.ask("nodes", timeout=5.0))
        self.others = others
        if not others:
            return
        holders = self.leases.holders([n for n, _ in others])
        for node_id, epoch in others:
            if holders.get(node_id) != epoch:
                with contextlib.suppress(pykka.ActorDeadError):
                    fleet.orchestrator.tell(NodeExpired(node_id, epoch))

    def run(self) -> None:
        while not self.halt.wait(LEASE_TICK):
            self.ticked = time.monotonic()
            for step in (self.renew, self.watch, self._maybe_publish):
                try:
                    step()
                except Exception as e:
                    self.log.warning(f"{step.__name__} failed", error=f"{type(e).__name__}: {e}")

    def _maybe_publish(self) -> None:
        if time.monotonic() - self._published >= HEARTBEAT_INTERVAL:
            self.publish()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        try:
            self.client.delete(self.keys.node_heartbeat(self.me.node_id))
        except redis.RedisError as e:
            self.log.warning("could not remove the heartbeat", error=str(e))
