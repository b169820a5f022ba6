"""`forge agent list|spawn|kill|pause|resume`: the acting ones are requests to the running
daemon, appended to the log; without a daemon they are refused."""

from __future__ import annotations

import time

import click

from events import types as t
from events.state import AgentState, FleetState, to_builtins
from forge.cli.app import App, echo_data, json_option, pass_app
from forge.cli.render import fleet_state, require_daemon, stamp, state_style, table
from forge.errors import InvalidTask, NotFound
from forge.runtimes import available_runtimes

__all__ = ["agent", "request_agent"]


@click.group()
def agent() -> None:
    """List, spawn, pause, resume and kill agents."""


def _rows(agents: list[AgentState]) -> list[list[str]]:
    return [
        [
            a.agent_id,
            state_style(a.status),
            a.runtime,
            ",".join(a.tags) or "-",
            a.task_id or "-",
            a.node_id or "-",
            stamp(a.updated_at),
        ]
        for a in agents
    ]


@agent.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include terminated agents.")
@json_option
@pass_app
def list_cmd(app: App, show_all: bool, as_json: bool) -> None:
    """List the agents (live ones unless --all)."""
    agents = [
        a
        for a in fleet_state(app).agents.values()
        if show_all or a.status not in ("terminated", "crashed")
    ]
    if as_json:
        echo_data([to_builtins(a) for a in agents], True, str)
        return
    headers = ["ID", "STATUS", "RUNTIME", "TAGS", "TASK", "NODE", "SINCE"]
    click.echo(table(headers, _rows(agents)) if agents else "no agents")
    click.echo(f"runtimes: {', '.join(available_runtimes())}")


def _live_agent(state: FleetState, agent_id: str) -> AgentState:
    found = state.agents.get(agent_id)
    if found is None:
        raise NotFound(f"unknown agent id {agent_id!r}")
    if found.status in ("terminated", "crashed"):
        raise NotFound(f"agent {agent_id} is {found.status}")
    return found


def _request(app: App, agent_id: str, event: t.Event, verb: str) -> None:
    """Ask the running daemon to act on a live agent, through the log."""
    click.echo(request_agent(app, agent_id, event, verb))


def request_agent(app: App, agent_id: str, event: t.Event, verb: str) -> str:
    """Append a request to a live agent (`forge agent pause|resume|kill`, `forge top`), with a
    daemon running to act on it; says what was done."""
    require_daemon(app)
    _live_agent(fleet_state(app), agent_id)
    app.store.append(event)
    return f"{verb} of {agent_id} requested"


@agent.command("spawn")
@click.option("--runtime", default="shell", show_default=True)
@click.option("--tag", multiple=True, help="A tag the agent carries (repeatable).")
@pass_app
def spawn_cmd(app: App, runtime: str, tag: tuple[str, ...]) -> None:
    """Ask the daemon for one more agent (within orchestrator.max_concurrent_agents)."""
    known = available_runtimes()
    if runtime not in known:
        raise InvalidTask(f"unknown runtime {runtime!r} (known: {', '.join(known)})")
    info = require_daemon(app)
    # on this machine's node if one runs here, else on the node whose heartbeat is latest
    beat = info.heartbeat
    node = info.local.node_id if info.local else (beat.node_id if beat else None)
    app.store.append(
        t.AgentSpawnRequested(at=time.time(), runtime=runtime, tags=sorted(tag), node_id=node)
    )
    click.echo("spawn requested" + (f" (node {node})" if node else ""))


@agent.command("kill")
@click.argument("agent_id")
@click.option("--force", is_flag=True, help="Kill its running task at once (no grace).")
@pass_app
def kill_cmd(app: App, agent_id: str, force: bool) -> None:
    """Stop an agent; a task it runs is requeued."""
    _request(
        app, agent_id, t.AgentKillRequested(at=time.time(), agent_id=agent_id, force=force), "kill"
    )


@agent.command("pause")
@click.argument("agent_id")
@pass_app
def pause_cmd(app: App, agent_id: str) -> None:
    """Pause an agent (its process is stopped with SIGSTOP)."""
    _request(app, agent_id, t.AgentPauseRequested(at=time.time(), agent_id=agent_id), "pause")


@agent.command("resume")
@click.argument("agent_id")
@pass_app
def resume_cmd(app: App, agent_id: str) -> None:
    """Resume a paused agent."""
    _request(app, agent_id, t.AgentResumeRequested(at=time.time(), agent_id=agent_id), "resume")
