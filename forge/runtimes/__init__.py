"""Runtimes: the ways Forge runs an attempt (`actors.runtime.RuntimeAdapter` implementations).

Each attempt of a process-based runtime runs under a small shim, detached from the daemon, with
its output in a per-attempt log file and its end recorded in a status file next to it, so that
a restarted daemon can adopt an attempt that is still running (see `forge.runtimes.process`).
"""

from __future__ import annotations

from forge.runtimes.completed import CompletedRun
from forge.runtimes.logfile import ExitStatus, iter_log_lines, read_status, status_path_for
from forge.runtimes.noop import NoopRuntime
from forge.runtimes.process import (
    LineHandler,
    OutcomeBuilder,
    ProcessRun,
    default_line_handler,
    default_outcome,
    secret_env_names,
)
from forge.runtimes.registry import (
    UnknownRuntime,
    available_runtimes,
    get_runtime,
    load_factory,
    register_runtime,
    shadowed_plugins,
)
from forge.runtimes.shell import ShellRuntime

__all__ = [
    "CompletedRun",
    "ExitStatus",
    "LineHandler",
    "NoopRuntime",
    "OutcomeBuilder",
    "ProcessRun",
    "ShellRuntime",
    "UnknownRuntime",
    "available_runtimes",
    "default_line_handler",
    "default_outcome",
    "get_runtime",
    "iter_log_lines",
    "load_factory",
    "read_status",
    "register_runtime",
    "secret_env_names",
    "shadowed_plugins",
    "status_path_for",
]
