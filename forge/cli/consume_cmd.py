"""`forge events consume`: hand events to a command or a webhook, at least once."""

from __future__ import annotations

import re
import signal
import socket
import threading
from types import FrameType
from typing import Any

import click

from events.consumer import GroupConsumer
from forge.cli.app import App, pass_app
from forge.notify import ExecHandler, Outcome, WebhookHandler, forward, matching_types
from forge.settings import NAMESPACE_PATTERN, environment

__all__ = ["consume"]


def _checked_name(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not re.match(NAMESPACE_PATTERN, value):
        raise click.BadParameter(
            f"{value[:40]!r}: 1 to 64 letters, digits, '_', '.' or '-'", param=param
        )
    return value


@click.command("consume")
@click.option(
    "--group", required=True, callback=_checked_name, help="Consumer group: its position is kept."
)
@click.option(
    "--name",
    callback=_checked_name,
    help="This consumer's name in the group (default: the host name); a restart with the same "
    "name first gets what it left unhandled.",
)
@click.option("--exec", "command", help="Run this shell command per event (JSON on stdin).")
@click.option("--webhook", help="POST each event as JSON to this http(s) URL.")
@click.option(
    "--type",
    "types",
    multiple=True,
    help="Only events of this type; a glob such as 'approval.*' (repeatable; default: all).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Tries after the first before an event goes to the dead-letter stream.",
)
@click.option(
    "--backoff",
    type=click.FloatRange(0, 60),
    default=1.0,
    show_default=True,
    help="Seconds before the first retry; doubled for each next one (at most 60).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a command or a webhook call may take.",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="A new group starts at the beginning of the log (default: at its end).",
)
@pass_app
def consume(
    app: App,
    group: str,
    name: str | None,
    command: str | None,
    webhook: str | None,
    types: tuple[str, ...],
    retries: int,
    backoff: float,
    timeout: float,
    from_start: bool,
) -> None:
    """Hand events to a command (--exec) or a URL (--webhook) at least once, until SIGTERM or
    Ctrl-C (which end it after the event at hand). A handler that keeps failing sends the
    event to the group's dead-letter stream. One line per handled event is printed."""
    if (command is None) == (webhook is None):
        raise click.UsageError("give one of --exec CMD or --webhook URL")
    wanted = matching_types(types or ["*"])
    handler: Any
    if webhook is not None:
        handler = WebhookHandler(webhook, timeout)
    else:
        assert command is not None
        if not command.strip() or "\0" in command:
            raise click.BadParameter("an empty command or one with a NUL byte", param_hint="--exec")
        handler = ExecHandler(command, timeout, environment())
    consumer = GroupConsumer(
        app.store,
        group=group,
        name=name or socket.gethostname().split(".")[0][:64] or "consumer",
        start="0" if from_start else "$",
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    click.echo(
        f"consuming as {consumer.name} in group {group} "
        f"({len(wanted)} event types); dead letters: {consumer.dead_key}",
        err=True,
    )

    def report(outcome: Outcome) -> None:
        line = f"{outcome.id}  {outcome.type}  {outcome.result} after {outcome.tries} tries"
        click.echo(line + (f": {outcome.reason}" if outcome.reason else ""))

    forward(consumer, handler, wanted, stop, retries=retries, backoff=backoff, report=report)
