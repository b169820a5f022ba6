"""`apply` handlers for everything but tasks: agents, circuit breakers, the budget, the
daemon, node leases and the requests to agents and the daemon (see `events.projection`, which
dispatches to them; tasks are `events.projection_tasks`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from events import types as t
from events.state import AgentState, BreakerState, FleetState, NodeState

Handler = Callable[[FleetState, Any], None]


def anomaly(state: FleetState, event: t.Event) -> None:
    state.anomalies += 1
    tag = str(type(event).__struct_config__.tag)
    state.anomaly_kinds[tag] = state.anomaly_kinds.get(tag, 0) + 1


# -- agents --------------------------------------------------------------------------------


def _spawned(state: FleetState, e: t.AgentSpawned) -> None:
    if e.agent_id in state.agents:
        anomaly(state, e)
        return
    state.agents[e.agent_id] = AgentState(
        agent_id=e.agent_id,
        runtime=e.runtime,
        tags=list(e.tags),
        node_id=e.node_id,
        spawned_at=e.at,
        updated_at=e.at,
    )


def _agent(state: FleetState, e: Any) -> AgentState | None:
    agent = state.agents.get(e.agent_id)
    if agent is None or agent.status == "terminated":
        anomaly(state, e)
        return None
    agent.updated_at = e.at
    return agent


def _agent_status(status: str, *, clear_task: bool = False, reason: bool = False) -> Handler:
    def handle(state: FleetState, e: Any) -> None:
        agent = _agent(state, e)
        if agent is None:
            return
        agent.status = status
        if clear_task:
            agent.task_id = agent.attempt = None
        if reason:
            agent.reason = e.reason

    return handle


def _busy(state: FleetState, e: t.AgentBusy) -> None:
    agent = _agent(state, e)
    if agent is not None:
        agent.status = "busy"
        agent.task_id = e.task_id
        agent.attempt = e.attempt


def _resumed(state: FleetState, e: t.AgentResumed) -> None:
    agent = _agent(state, e)
    if agent is not None:
        agent.status = "busy" if agent.task_id is not None else "idle"


# -- breakers, budget, daemon, nodes -------------------------------------------------------


def _breaker(state: FleetState, name: str, at: float) -> BreakerState:
    breaker = state.breakers.get(name)
    if breaker is None:
        breaker = state.breakers[name] = BreakerState(name=name)
    breaker.changed_at = at
    return breaker


def _breaker_opened(state: FleetState, e: t.BreakerOpened) -> None:
    b = _breaker(state, e.name, e.at)
    b.state, b.until, b.failures, b.reason = "open", e.until, e.failures, e.reason


def _breaker_half_opened(state: FleetState, e: t.BreakerHalfOpened) -> None:
    _breaker(state, e.name, e.at).state = "half_open"


def _breaker_closed(state: FleetState, e: t.BreakerClosed) -> None:
    b = _breaker(state, e.name, e.at)
    b.state, b.until, b.failures, b.reason = "closed", None, 0, None


def _budget_exhausted(state: FleetState, e: t.BudgetExhausted) -> None:
    state.budget_exhausted = True
    state.budget_spent_usd = e.spent_usd
    state.budget_limit_usd = e.limit_usd


def _budget_limit_set(state: FleetState, e: t.BudgetLimitSet) -> None:
    state.budget_limit_usd = e.limit_usd
    state.budget_exhausted = e.limit_usd is not None and state.total_cost_usd >= e.limit_usd
    state.budget_spent_usd = state.total_cost_usd if state.budget_exhausted else None


def _daemon_started(state: FleetState, e: t.DaemonStarted) -> None:
    node = state.nodes.get(e.node_id)
    if node is not None and e.epoch <= node.epoch:
        anomaly(state, e)
        return
    # the epochs of a namespace's nodes come from one counter: the newest start is the highest
    state.daemon_node, state.daemon_epoch, state.daemon_pid = e.node_id, e.epoch, e.pid
    state.daemon_epoch = max(state.daemon_epoch, e.epoch)
    state.daemon_running = True
    state.stop_requested = False
    state.nodes[e.node_id] = NodeState(
        node_id=e.node_id, epoch=e.epoch, running=True, pid=e.pid, started_at=e.at
    )


def _daemon_stopped(state: FleetState, e: t.DaemonStopped) -> None:
    node = state.nodes.get(e.node_id)
    if node is None:  # a snapshot from before nodes were recorded
        if e.epoch != state.daemon_epoch:
            anomaly(state, e)
            return
        state.daemon_running = False
        return
    if node.epoch != e.epoch or not node.running:
        anomaly(state, e)
        return
    node.running = node.held = False
    state.daemon_running = any(n.running for n in state.nodes.values())


def _lease_taken(state: FleetState, e: t.NodeLeaseTaken) -> None:
    node = state.nodes.get(e.node_id)
    if node is None or e.epoch != node.epoch or not node.running:
        anomaly(state, e)  # a lease is taken right after its node's start, at the same epoch
        return
    node.held = True
    node.expires_at = e.expires_at


def _lease_lost(state: FleetState, e: t.NodeLeaseLost) -> None:
    node = state.nodes.get(e.node_id)
    if node is None or node.epoch != e.epoch:
        anomaly(state, e)
        return
    if not node.running:
        return  # another node recorded it first (or the node stopped): nothing more to lose
    node.running = node.held = False
    node.lost = True
    state.daemon_running = any(n.running for n in state.nodes.values())


# -- requests to agents and the daemon -----------------------------------------------------


def _agent_request(state: FleetState, e: t.Event) -> None:
    state.agent_requests += 1


def _stop_requested(state: FleetState, e: t.DaemonStopRequested) -> None:
    state.stop_requested = True
    state.stop_requests[e.node_id or "*"] = e.at
