"""The `forge` command: the root group, error handling and the command groups."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import structlog

from events.errors import ForgeError
from events.redact import redact
from forge import __version__
from forge.cli.agent_cmd import agent
from forge.cli.app import App
from forge.cli.approvals_cmd import approvals, approve, deny
from forge.cli.config_cmd import config
from forge.cli.daemon_cmd import daemon
from forge.cli.events_cmd import events
from forge.cli.land_cmd import LAND_COMMANDS
from forge.cli.run_cmd import run
from forge.cli.server_cmd import server
from forge.cli.status_cmd import status
from forge.cli.task_cmd import task
from forge.cli.top import top
from forge.cli.web_cmd import web

__all__ = ["cli", "main", "one_line"]


def one_line(text: str) -> str:
    """`text` made safe to print as one line: line breaks and other control characters (an
    escape sequence in a task id, a newline in a TOML key) are shown escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _os_error(e: OSError) -> str:
    """An OSError as `cannot use FILE: reason` (ENOSPC, EACCES, ENOENT, ...)."""
    reason = e.strerror or type(e).__name__
    return f"cannot use {e.filename}: {reason}" if e.filename else reason


class ForgeGroup(click.Group):
    """A group that turns any error into one line on stderr and a non-zero exit code: a
    `ForgeError`, or anything unexpected, is exit 1; a usage error stays exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ForgeError as e:
            raise click.ClickException(one_line(redact(str(e)))) from None
        except KeyboardInterrupt:
            raise click.Abort from None
        except BrokenPipeError:  # `forge ... | head`: the reader left, which is not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None
        except OSError as e:  # a disk full, a file that cannot be opened: no bug, one line
            raise click.ClickException(one_line(redact(_os_error(e)))) from None
        except RecursionError:
            raise click.ClickException("input nested too deeply") from None
        except MemoryError:
            raise click.ClickException("out of memory") from None
        except Exception as e:  # the last net: a bug must still not print a traceback
            app = ctx.find_object(App)
            if app is not None and app.debug:
                structlog.get_logger("forge.cli").debug("unexpected error", exc_info=True)
            message = f"internal error: {type(e).__name__}: {e}"
            raise click.ClickException(one_line(redact(message))) from None
        finally:
            app = ctx.find_object(App)
            if app is not None:
                app.close()


@click.group(cls=ForgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="forge")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings file (default: $FORGE_HOME/config.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Log level (default: logging.level, or FORGE_LOG_LEVEL).",
)
@click.option(
    "--log-format", type=click.Choice(["auto", "console", "json"]), help="Log line format."
)
@click.pass_context
def cli(
    ctx: click.Context, config_file: Path | None, log_level: str | None, log_format: str | None
) -> None:
    """Forge runs many Claude Code agents (or any command) on a prioritised queue of tasks,
    and records every state change in an event log that can rebuild the fleet at any moment.
    """
    ctx.obj = App(config_file, {"logging.level": log_level, "logging.format": log_format})


for command in (task, agent, daemon, events, run, status, config, server, web):
    cli.add_command(command)
for command in (approvals, approve, deny, top):
    cli.add_command(command)
for command in LAND_COMMANDS:  # diff, merge, discard, continue, attach, cleanup
    task.add_command(command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="forge")
