"""Isolating an attempt of a process runtime (shell, claude): its command wrapped in the sandbox
(`forge.runtimes.sandbox`) and put under its kernel-enforced limits (`forge.runtimes.cgroups`),
and how an attempt that hit a limit is reported.

The argv the shim runs becomes `[limits prefix] [bwrap ...] command`: the command joins its
cgroup, then bubblewrap builds the sandbox and runs it. When the attempt ends, what the kernel
counted decides the outcome before the cgroup is emptied and removed: a process killed over the
memory limit makes it `oom`; a fork refused at the process limit makes it `unhealthy`, and a
watchdog stops such an attempt at once (a fork bomb never ends by itself). The limiter is found
again from its record beside the log, so an adopted attempt is reported and cleaned up alike.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

from actors.runtime import FailureClass, Outcome, TaskSpec
from events.event_base import Limits
from forge.log import get_logger
from forge.runtimes.cgroups import Limiter, LimitEvents
from forge.runtimes.logfile import ExitStatus
from forge.runtimes.outcome import OutcomeBuilder, default_outcome
from forge.runtimes.sandbox import bwrap_binary, git_common_dir, sandbox_argv, task_home

__all__ = ["Isolated", "isolate", "limited", "reattach", "watch"]

WATCH_INTERVAL = 0.1  # seconds between looks at the process limit's counter

_log = get_logger(__name__)


class Isolated(msgspec.Struct, frozen=True, kw_only=True):
    """The argv to give the shim, and the limiter of the attempt (None: no limits)."""

    argv: list[str]
    limiter: Limiter | None = None


def _has_limits(limits: Limits | None) -> bool:
    return limits is not None and any(
        v is not None for v in (limits.memory_mb, limits.cpus, limits.pids)
    )


def isolate(
    spec: TaskSpec, argv: Sequence[str], env: Mapping[str, str], hidden: Sequence[str] = ()
) -> Isolated:
    """`argv` as the attempt of `spec` must run it. `hidden`: directories the sandbox hides
    besides the task's own logs (the daemon's FORGE_HOME). Raises OSError when the sandbox or
    the limits cannot be set up (no bwrap, a cgroup the kernel refuses)."""
    out = list(argv)
    if spec.sandbox:
        cwd = os.path.abspath(spec.cwd or os.getcwd())
        writable = list(spec.add_dirs)
        common = git_common_dir(cwd)
        if common is not None:
            writable.append(common)
        home_dir = env.get("HOME")
        out = sandbox_argv(
            out,
            bwrap=bwrap_binary(env.get("PATH")),
            cwd=cwd,
            writable=writable,
            hidden=[*hidden, os.path.dirname(os.path.abspath(spec.log_path))],
            home=(task_home(spec.log_path), home_dir) if home_dir else None,
            network=spec.network or "on",
        )
    if not _has_limits(spec.limits):
        return Isolated(argv=out)
    assert spec.limits is not None
    limiter = Limiter.create(spec.limits, spec.log_path)
    return Isolated(argv=[*limiter.prefix(), *out], limiter=limiter)


def reattach(spec: TaskSpec) -> Limiter | None:
    """The limiter of an attempt an earlier daemon started (None: it had no limits)."""
    return Limiter.load(spec.log_path) if _has_limits(spec.limits) else None


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def classify(
    outcome: Outcome, events: LimitEvents, limits: Limits, requested: FailureClass | None
) -> Outcome:
    """The outcome once the kernel's counters are known: a limit hit is named with its figure.
    A stop a person asked for (cancel, timeout) stands."""
    if requested not in (None, "unhealthy"):
        return outcome
    if events.oom_kills and not outcome.ok and limits.memory_mb is not None:
        peak = f"; peak {_mib(events.peak_bytes)}" if events.peak_bytes else ""
        reason = (
            f"killed by the kernel: over its memory limit of {limits.memory_mb} MiB "
            f"({events.oom_kills} process(es) killed{peak})"
        )
        return msgspec.structs.replace(outcome, ok=False, failure="oom", reason=reason)
    if events.pids_refused and limits.pids is not None:
        reason = (
            f"hit its process limit of {limits.pids}: {events.pids_refused} fork(s) refused; "
            "stopped"
        )
        return msgspec.structs.replace(outcome, ok=False, failure="unhealthy", reason=reason)
    return outcome


def limited(limiter: Limiter | None, builder: OutcomeBuilder | None = None) -> OutcomeBuilder:
    """An outcome builder that reads the kernel's counters after `builder`, then empties and
    removes the cgroup (nothing of the attempt outlives it)."""
    inner = builder or default_outcome
    if limiter is None:
        return inner

    def build(status: ExitStatus | None, requested: FailureClass | None) -> Outcome:
        outcome = inner(status, requested)
        events = limiter.events()
        try:
            limiter.remove()
        except OSError as e:
            _log.warning("limits.cleanup_failed", cgroup=list(limiter.dirs.values()), error=str(e))
        return classify(outcome, events, limiter.limits, requested)

    return build


class _Stoppable(Protocol):
    """What the watchdog needs of a run (a `ProcessRun`)."""

    def wait(self, timeout: float | None = None) -> Outcome | None: ...

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None: ...


def watch(run: _Stoppable, limiter: Limiter | None) -> None:
    """Stop `run` as soon as a fork is refused at its process limit (a thread per run, while
    it runs; none without a process limit)."""
    if limiter is None or limiter.limits.pids is None or limiter.mode == "rlimit":
        return

    def loop() -> None:
        while True:
            started = time.monotonic()
            if run.wait(WATCH_INTERVAL) is not None:
                return  # ended
            if time.monotonic() - started < WATCH_INTERVAL / 2:
                return  # wait() returned early without an outcome: the run was detached
            if limiter.events().pids_refused:
                _log.warning("limits.pids_hit", pids=limiter.limits.pids)
                run.terminate(0.0, "unhealthy")
                return

    threading.Thread(target=loop, name="forge-limits-watch", daemon=True).start()
