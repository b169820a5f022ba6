"""`forge status`: the fleet at a glance."""

from __future__ import annotations

import time
from typing import Any

import click
import msgspec

from events.approvals import ApprovalState
from events.state import FleetState, to_builtins
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.approvals_cmd import render_approvals, waiting_approvals
from forge.cli.render import (
    DaemonInfo,
    daemon_info,
    describe,
    duration,
    fleet_state,
    state_style,
    table,
    task_duration,
)
from forge.connection import describe_target

__all__ = ["status"]


def _data(app: App, state: FleetState) -> dict[str, Any]:
    info = daemon_info(app)
    agents: dict[str, int] = {}
    for a in state.agents.values():
        agents[a.status] = agents.get(a.status, 0) + 1
    running = [
        {
            "task_id": x.task_id,
            "state": x.state,
            "agent_id": x.agent_id,
            "attempt": x.attempt,
            "seconds": task_duration(x),
            "cost_usd": round(x.cost_usd, 6),
            "waiting_approvals": list(x.pending_approvals),
            "what": describe(x),
        }
        for x in state.tasks.values()
        if x.state in ("assigned", "running")
    ]
    beat = info.heartbeat
    return {
        "redis": describe_target(app.settings),
        "namespace": app.settings.redis.namespace,
        "daemon": {
            "running": info.running,
            "pid": info.local.pid if info.local else (beat.pid if beat else None),
            "node_id": beat.node_id if beat else state.daemon_node,
            "epoch": state.daemon_epoch,
        },
        "nodes": _nodes(state, info),
        "agents": agents,
        "queue": {str(p): len(state.queues[p]) for p in sorted(state.queues)},
        "tasks": state.counts(),
        "running": running,
        "breakers": {
            name: {"state": b.state, "until": b.until, "reason": b.reason}
            for name, b in state.breakers.items()
        },
        "spend_usd": round(state.total_cost_usd, 6),
        "budget_usd": state.budget_limit_usd,  # the limit the daemon recorded
        "budget_configured_usd": app.settings.orchestrator.fleet_budget_usd,
        "budget_exhausted": state.budget_exhausted,
        "log": {"events": state.event_count, "position": state.position},
        "approvals": [to_builtins(a) for a in waiting_approvals(state)],  # waiting tool calls
    }


def _nodes(state: FleetState, info: DaemonInfo) -> list[dict[str, Any]]:
    """Every node the log knows, with its lease and, from its heartbeat, its load."""
    beats = {b.node_id: b for b in info.nodes}
    out = []
    for node in sorted(state.nodes.values(), key=lambda n: n.node_id):
        beat = beats.get(node.node_id)
        lease = "held" if node.running else ("lost" if node.lost else "released")
        out.append(
            {
                "node_id": node.node_id,
                "epoch": node.epoch,
                "lease": lease,
                "host": beat.host if beat else None,
                "pid": beat.pid if beat else node.pid,
                "agents": beat.agents if beat else 0,
                "running": beat.running if beat else 0,
                "labels": beat.labels if beat else [],
                "heartbeat_age": round(time.time() - beat.updated_at, 1) if beat else None,
                "this_machine": info.local is not None and info.local.node_id == node.node_id,
            }
        )
    return out


def _render(data: dict[str, Any]) -> str:
    d = data["daemon"]
    head = (
        f"daemon: running (pid {d['pid']}, node {d['node_id']}, epoch {d['epoch']})"
        if d["running"]
        else "daemon: not running (tasks stay queued until `forge daemon start`)"
    )
    live = {s: n for s, n in data["agents"].items() if s not in ("terminated", "crashed")}
    lines = [head]
    if len(data["nodes"]) > 1 or any(n["lease"] == "lost" for n in data["nodes"]):
        for n in data["nodes"]:
            where = f"{n['host']} pid {n['pid']}" if n["host"] else "no heartbeat"
            load = f"{n['agents']} agents, {n['running']} running" if n["lease"] == "held" else ""
            mark = " (this machine)" if n["this_machine"] else ""
            lines.append(
                f"  node {n['node_id']}{mark}: lease {state_style(n['lease'])}, "
                f"epoch {n['epoch']}, {where}"
                + (f", {load}" if load else "")
                + (f", labels {','.join(n['labels'])}" if n["labels"] else "")
            )
    lines += [
        f"redis: {data['redis']}   namespace: {data['namespace']}",
        "agents: "
        + (", ".join(f"{n} {state_style(s)}" for s, n in sorted(live.items())) or "none"),
        "queue: "
        + "  ".join(f"p{p}={n}" for p, n in data["queue"].items())
        + f"  (total {sum(data['queue'].values())})",
        "tasks: "
        + (", ".join(f"{n} {state_style(s)}" for s, n in sorted(data["tasks"].items())) or "none"),
    ]
    breakers = data["breakers"]
    lines.append(
        "breakers: "
        + (
            ", ".join(
                f"{name} {state_style(b['state'])}"
                + (
                    f" until {time.strftime('%H:%M:%S', time.localtime(b['until']))}"
                    if b["state"] == "open" and b["until"]
                    else ""
                )
                for name, b in breakers.items()
            )
            or "none tripped"
        )
    )
    budget = f" of ${data['budget_usd']:.2f}" if data["budget_usd"] is not None else ""
    exhausted = " (exhausted: no new claude attempts)" if data["budget_exhausted"] else ""
    configured = data["budget_configured_usd"]
    if configured != data["budget_usd"]:
        limit = "no limit" if configured is None else f"${configured:.2f}"
        exhausted += f" (configured: {limit}, from the next daemon start)"
    lines.append(f"spend: ${data['spend_usd']:.4f}{budget}{exhausted}")
    lines.append(f"log: {data['log']['events']} events, at {data['log']['position']}")
    if data["running"]:
        rows = [
            [
                r["task_id"],
                state_style(r["state"]) + (", waits approval" if r["waiting_approvals"] else ""),
                r["agent_id"] or "-",
                r["attempt"],
                duration(r["seconds"]),
                f"${r['cost_usd']:.4f}",
                r["what"],
            ]
            for r in data["running"]
        ]
        lines += ["", table(["RUNNING", "STATE", "AGENT", "ATT", "FOR", "COST", "WHAT"], rows)]
    if data["approvals"]:
        waiting = [msgspec.convert(a, ApprovalState) for a in data["approvals"]]
        lines += ["", "waiting for approval (`forge approve ID` / `forge deny ID`):"]
        lines.append(render_approvals(waiting, time.time()))
    return "\n".join(lines)


@click.command()
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Show the fleet at a glance: daemon, agents, queue by priority, running tasks,
    breakers and spend."""
    echo_data(_data(app, fleet_state(app)), as_json, _render)
