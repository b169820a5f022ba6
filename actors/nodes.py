"""The nodes of a namespace: several daemons (one per machine) sharing one log.

Each daemon is a node with a stable id (kept in its FORGE_HOME) and, for each start, an epoch
taken from one counter beside the log (`events.leases`) together with the node's lease. Claims
record the node and epoch that made them, and every later write about an attempt is fenced on
that epoch, so exactly one node runs an attempt and a node that came back with an old epoch
has its late results refused.

A node owns the attempts it claimed. It leaves the other nodes' running work alone, as long as
they hold their lease. When a node's lease is found gone, any other node records the node lost
(`node.lease_lost`) and ends each of its running attempts as `lost` — fenced on the lost epoch,
so however many survivors see it at once, each attempt is ended once — and the task is retried
by the same rules as after any crash. A node that cannot renew its lease kills its own attempts
first (see `forge.daemon`), before the lease can run out elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from actors.agents import Agents
from actors.ledger import Ledger
from actors.messages import AttemptEnded
from actors.runtime import Outcome
from events import types as t
from events.leases import NodeLeases
from events.state import FleetState, NodeState, TaskState

__all__ = ["foreign_owner", "others_held", "record_lost", "requeue_orphans", "runs", "start_node"]


def start_node(ledger: Ledger, leases: NodeLeases, node_id: str, ttl: float, pid: int) -> int:
    """Take this node's epoch and lease, and record both; returns the epoch."""
    epoch = leases.take(node_id, ledger.state.daemon_epoch, ttl)
    now = ledger.now()
    ledger.append(
        [
            t.DaemonStarted(at=now, node_id=node_id, epoch=epoch, pid=pid),
            t.NodeLeaseTaken(at=now, node_id=node_id, epoch=epoch, expires_at=now + ttl),
        ]
    )
    return epoch


def others_held(state: FleetState, me: str) -> list[NodeState]:
    """The other nodes the log says are running (their leases to watch)."""
    return [n for n in state.nodes.values() if n.node_id != me and n.running]


def runs(state: FleetState, node_id: str) -> bool:
    """The log says node `node_id` runs (it started and neither stopped nor was lost)."""
    node = state.nodes.get(node_id)
    return node is not None and node.running


def foreign_owner(state: FleetState, task: TaskState, me: str) -> str | None:
    """The other running node that owns `task`'s attempt (None: this node's, or no running
    node's). A task claimed before nodes were recorded belongs to whoever starts next."""
    owner = task.node_id
    if owner is None or owner == me:
        return None
    return owner if runs(state, owner) else None


def _orphans(state: FleetState, me: str) -> Iterator[TaskState]:
    """Attempts claimed by another node that no longer runs (a node that restarted adopts
    its own, whatever their epoch)."""
    for task in state.tasks.values():
        if task.state not in ("assigned", "running") or task.node_id in (None, me):
            continue
        if task.node_id in state.nodes and not runs(state, task.node_id or ""):
            yield task


def requeue_orphans(ledger: Ledger, agents: Agents, me: str, why: str) -> int:
    """End as lost every attempt of another node that no longer runs (recorded lost, or stopped
    without ending it); the tasks are retried. Returns how many."""
    ended = 0
    for task in list(_orphans(ledger.state, me)):
        outcome = Outcome(ok=False, failure="lost", reason=why.format(node=task.node_id))
        agents.post(
            AttemptEnded(task.agent_id or "", task.task_id, task.attempt, task.epoch or 0, outcome)
        )
        ended += 1
    return ended


def record_lost(
    ledger: Ledger, agents: Agents, leases: NodeLeases, me: str, node_id: str, epoch: int
) -> bool:
    """Node `node_id`'s lease at `epoch` was found gone: record it lost, terminate its agents
    and requeue its attempts. False (nothing done) if the log or the lease says otherwise."""
    node = ledger.state.nodes.get(node_id)
    if node is None or node.epoch != epoch or not node.running or node_id == me:
        return False
    if leases.holders([node_id])[node_id] == epoch:
        return False  # renewed after all
    now = ledger.now()
    gone = [
        t.AgentTerminated(at=now, agent_id=a.agent_id, reason=f"node {node_id} lost its lease")
        for a in ledger.state.agents.values()
        if a.node_id == node_id and a.status != "terminated"
    ]
    ledger.append(
        [t.NodeLeaseLost(at=now, node_id=node_id, epoch=epoch, reason="lease ran out"), *gone]
    )
    ledger.log.warning("node lost its lease", lost_node=node_id, epoch=epoch)
    requeue_orphans(ledger, agents, me, "node {node} lost its lease")
    return True
