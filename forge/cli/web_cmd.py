"""`forge web`: serve the dashboard on 127.0.0.1, protected by a token printed at start."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

from forge.cli.app import App, pass_app
from forge.connection import connect
from forge.settings import environment

__all__ = [
    "DEFAULT_PORT",
    "TOKEN_VARIABLE",
    "background_web",
    "dashboard_beside",
    "web",
    "web_token",
]

DEFAULT_PORT = 8765
TOKEN_VARIABLE = "FORGE_WEB_TOKEN"  # noqa: S105 - the name of a variable, not a secret
MIN_TOKEN = 16


def web_token() -> str | None:
    """The token set in FORGE_WEB_TOKEN, if any (else the server makes a fresh one)."""
    token = environment().get(TOKEN_VARIABLE) or None
    if token is not None and (len(token) < MIN_TOKEN or not token.isascii() or " " in token):
        raise click.BadParameter(
            f"{TOKEN_VARIABLE} must be at least {MIN_TOKEN} ASCII characters with no space"
        )
    return token


@click.command("web")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@pass_app
def web(app: App, port: int) -> None:
    """Serve the dashboard on 127.0.0.1: the fleet now, tasks, one task's timeline, transcript
    and diff, and a time slider that replays the fleet at any past moment. Every request needs
    the token in the printed address (FORGE_WEB_TOKEN sets it; else a fresh one each start).
    It reads the log only: a daemon need not run. Ctrl-C stops it."""
    from forge.web import WebServer  # starlette and uvicorn load only for this command

    server = WebServer(app.settings, app.redis, port, web_token())
    click.echo(f"dashboard: {server.url}")
    click.echo(f"namespace: {app.settings.redis.namespace}   (Ctrl-C stops)")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server has stopped cleanly
        server.run()


@contextlib.contextmanager
def dashboard_beside(app: App, port: int | None) -> Iterator[None]:
    """`forge daemon start --foreground --web PORT`: serve the dashboard in a thread, on its
    own connection, while the daemon runs. The address is printed with the token only when
    the token was made here (a daemon started in the background got its token from
    FORGE_WEB_TOKEN, and its output is the daemon's log, where no secret goes)."""
    if port is None:
        yield
        return
    from forge.web import WebServer

    given = web_token()
    server = WebServer(app.settings, connect(app.settings), port, given)
    server.start()
    shown = server.url if given is None else f"{server.bare_url} (token: ${TOKEN_VARIABLE})"
    click.echo(f"dashboard: {shown}")
    sys.stdout.flush()
    try:
        yield
    finally:
        server.stop()


def background_web(port: int | None) -> tuple[list[str], dict[str, str], str | None]:
    """For `forge daemon start --web PORT` in the background: the detached daemon's extra
    arguments and environment (the token it must require), and the address to print."""
    if port is None:
        return [], {}, None
    from forge.web import HOST, new_token

    token = web_token() or new_token()
    return (
        ["--web", str(port)],
        {TOKEN_VARIABLE: token},
        f"dashboard: http://{HOST}:{port}/?token={token}",
    )
