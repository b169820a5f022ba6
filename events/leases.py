"""Node leases: which nodes of a namespace are alive, decided by Redis's clock alone.

A starting node takes an epoch (one above any the log or the counter knows) and, in the same
script, its lease: a key holding that epoch that expires after the lease TTL. The node renews
it while it runs; a renewal succeeds only while the key still holds the node's epoch, so a
node whose lease ran out can never take it back — it must start again, with a new epoch.
Another node that finds a lease gone records the node lost (`node.lease_lost`) and requeues
its attempts; every such record is fenced in the log by the lost epoch.

The keys are beside the log, not in it: the log records who took a lease and who lost one
(`node.lease_taken`, `node.lease_lost`); the keys only carry the expiry.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.commands.core import Script

from events.keys import Keys
from events.store import load_script, redis_errors

__all__ = ["NodeLeases"]


def _script(client: redis.Redis, name: str) -> Script:
    return client.register_script(load_script(name))


class NodeLeases:
    """The leases of one namespace's nodes."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._take = _script(client, "next_epoch.lua")
        self._renew = _script(client, "renew_lease.lua")

    def take(self, node_id: str, log_epoch: int, ttl: float) -> int:
        """A new epoch for `node_id` (above `log_epoch`, the highest the log knows), with the
        node's lease held for `ttl` seconds."""
        with redis_errors("take a node lease"):
            epoch = self._take(
                keys=[self.keys.epochs, self.keys.lease(node_id)], args=[log_epoch, _ms(ttl)]
            )
        return int(epoch)

    def renew(self, node_id: str, epoch: int, ttl: float) -> bool:
        """Hold the lease for `ttl` more seconds; False if it is gone (it ran out)."""
        with redis_errors("renew a node lease"):
            return bool(self._renew(keys=[self.keys.lease(node_id)], args=[epoch, _ms(ttl)]))

    def release(self, node_id: str, epoch: int) -> bool:
        """Give the lease up (a graceful stop); False if it was gone already."""
        with redis_errors("release a node lease"):
            return bool(self._renew(keys=[self.keys.lease(node_id)], args=[epoch, "0"]))

    def holders(self, node_ids: Sequence[str]) -> dict[str, int | None]:
        """The epoch holding each node's lease now (None: the lease is gone)."""
        if not node_ids:
            return {}
        with redis_errors("read node leases"):
            values = self.client.mget([self.keys.lease(n) for n in node_ids])
        return {n: int(v) if v is not None else None for n, v in zip(node_ids, values, strict=True)}


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
