"""`forge top`: watch the fleet live in the terminal, or save a picture of it."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from events.errors import ForgeError
from forge.cli.app import App, pass_app

__all__ = ["top"]


def _size(text: str) -> tuple[int, int]:
    cols, sep, rows = text.partition("x")
    if not sep or not cols.isdigit() or not rows.isdigit() or not (20 <= int(cols) <= 1000):
        raise click.BadParameter(f"{text!r} is not COLSxROWS (e.g. 160x48)", param_hint="--size")
    if not 10 <= int(rows) <= 1000:
        raise click.BadParameter(f"{text!r}: rows must be 10 to 1000", param_hint="--size")
    return int(cols), int(rows)


@click.command("top")
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save an SVG picture of the view once it has loaded, then exit (needs no terminal).",
)
@click.option("--size", default="160x48", show_default=True, help="COLSxROWS of --screenshot.")
@pass_app
def top(app: App, screenshot: Path | None, size: str) -> None:
    """Watch the fleet live: agents, running tasks, the queue, approvals, breakers and spend,
    followed from the log. Keys: c cancel, r retry, p pause/resume an agent, a/d approve or
    deny, l or Enter a task's transcript, q quit."""
    from textual.pilot import Pilot

    from forge.cli.top.app import TopApp  # Textual loads only for this command

    cols, rows = _size(size)
    if screenshot is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ForgeError("forge top needs a terminal (or --screenshot FILE for a picture)")
    view = TopApp(app)
    if screenshot is None:
        view.run()
        return
    target = screenshot.expanduser().resolve()

    async def picture(pilot: Pilot[object]) -> None:
        view.flush()
        await pilot.pause()  # let the screen lay out and draw what was flushed
        view.save_screenshot(target.name, str(target.parent))
        view.exit()

    view.run(headless=True, size=(cols, rows), auto_pilot=picture)
    click.echo(f"saved {target}")
