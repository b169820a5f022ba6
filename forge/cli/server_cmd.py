"""`forge server status|start|stop`: the embedded Valkey/Redis server."""

from __future__ import annotations

import datetime as dt

import click

from forge.cli.app import App, echo_data, json_option, pass_app
from forge.connection import connect, describe_target
from forge.server import EmbeddedServer, ServerStatus, find_server_binary

__all__ = ["server"]


@click.group()
def server() -> None:
    """Show and control the embedded Valkey/Redis server."""


def _embedded(app: App) -> EmbeddedServer:
    if app.settings.redis.url:
        raise click.ClickException(
            f"redis.url is set ({describe_target(app.settings)}): "
            "Forge uses that server and manages no embedded one"
        )
    return EmbeddedServer(app.settings.home_path, app.settings.redis.appendfsync)


def _render(state: ServerStatus) -> str:
    if not state.running:
        note = " (stale pid file or socket left by a crashed server)" if state.stale else ""
        return f"embedded server: stopped{note}\ndirectory: {state.directory}"
    since = dt.datetime.fromtimestamp(state.started_at or 0, tz=dt.UTC).isoformat(
        timespec="seconds"
    )
    if not state.answering:
        return "\n".join(
            [
                f"embedded server: running, not answering (pid {state.pid}, since {since})",
                "it is stopped or overloaded; retry, or `forge server stop --force`",
                f"socket: {state.socket}",
            ]
        )
    return "\n".join(
        [
            f"embedded server: running (pid {state.pid}, since {since})",
            f"version: {state.version}",
            f"socket: {state.socket}",
            f"binary: {state.binary}",
        ]
    )


@server.command("status")
@json_option
@pass_app
def status(app: App, as_json: bool) -> None:
    """Tell whether the embedded server runs and answers, and where (exit 1 unless it does)."""
    state = _embedded(app).status()
    echo_data(state, as_json, _render)
    if not state.answering:
        raise click.exceptions.Exit(1)


@server.command("start")
@pass_app
def start(app: App) -> None:
    """Start the embedded server (does nothing if it already runs)."""
    embedded = _embedded(app)
    find_server_binary()
    started = embedded.ensure_running(app.settings.redis.connect_timeout)
    connect(app.settings).close()
    click.echo(("started" if started else "already running") + f": {embedded.url}")


@server.command("stop")
@click.option(
    "--force",
    is_flag=True,
    help="Also stop a server that does not answer: SIGTERM (and SIGCONT), then SIGKILL.",
)
@pass_app
def stop(app: App, force: bool) -> None:
    """Stop the embedded server; its data stays on disk (AOF)."""
    stopped = _embedded(app).stop(force=force, answer_timeout=app.settings.redis.connect_timeout)
    click.echo("stopped" if stopped else "not running")
