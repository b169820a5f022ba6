"""The isolation options of shell and claude tasks, shared by `forge task submit` and `forge run`.

The values are passed on as typed; `forge.isolation` checks them (one clear line for a bad size
or network) and resolves them against the `[isolation]` settings (docs/isolation.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["isolation_fields", "isolation_options"]

F = TypeVar("F", bound=Callable[..., Any])


def isolation_options(func: F) -> F:
    """Add --sandbox/--no-sandbox, --network, --memory, --cpus and --pids."""
    options = [
        click.option(
            "--sandbox/--no-sandbox",
            default=None,
            help="Run in the bubblewrap sandbox: only the working directory (and --add-dir) "
            "writable, private /tmp and home, the daemon's files and other tasks' worktrees "
            "hidden (default: isolation.sandbox).",
        ),
        click.option(
            "--network",
            metavar="on|off|api",
            help="Network of a sandboxed task: on, off (loopback only) or api (the model API's "
            "host and port only) (default: isolation.network).",
        ),
        click.option(
            "--memory",
            metavar="SIZE",
            help="Memory limit of the attempt's processes, e.g. 512M or 2G; over it the "
            "kernel kills them and the attempt fails oom (default: isolation.memory).",
        ),
        click.option(
            "--cpus",
            type=float,
            metavar="N",
            help="CPU share of the attempt, in cores, e.g. 0.5 (default: isolation.cpus).",
        ),
        click.option(
            "--pids",
            type=int,
            metavar="N",
            help="Most processes and threads alive at once; a fork refused stops the attempt "
            "(default: isolation.pids).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def isolation_fields(flags: dict[str, Any]) -> dict[str, Any]:
    """The `TaskRequest` fields of the isolation options in `flags` (popped from it); an option
    not given stays None, so the settings' default applies."""
    names = ("sandbox", "network", "memory", "cpus", "pids")
    return {name: flags.pop(name, None) for name in names}
