"""Isolating an attempt of a process runtime (shell, claude): its command wrapped in the sandbox
(`forge.runtimes.sandbox`) and put under its kernel-enforced limits (`forge.runtimes.cgroups`),
and how an attempt that hit a limit is reported.

The argv the shim runs becomes `[limits prefix] [api relay] [bwrap ...] command`: the command
joins its cgroup, a sandbox whose network is "api" gets a network namespace with a relay to the
model API only (`forge.runtimes.netrelay`), then bubblewrap builds the sandbox and runs it.
When the attempt ends, what the kernel counted decides the outcome before the cgroup is emptied
and removed: a process killed over the memory limit makes it `oom`; a fork refused at the
process limit makes it `unhealthy`, and a watchdog stops such an attempt at once (a fork bomb
never ends by itself). The limiter is found again from its record beside the log, so an
adopted attempt is reported and cleaned up alike.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import msgspec

from actors.runtime import FailureClass, Outcome, TaskSpec
from events.event_base import Limits
from forge.log import get_logger
from forge.runtimes.cgroups import Limiter, LimitEvents
from forge.runtimes.logfile import ExitStatus
from forge.runtimes.outcome import OutcomeBuilder, default_outcome
from forge.runtimes.sandbox import bwrap_binary, git_common_dir, sandbox_argv, task_home

__all__ = [
    "Isolated",
    "api_target",
    "daemon_paths",
    "isolate",
    "limited",
    "reattach",
    "relay_prefix",
    "watch",
]

WATCH_INTERVAL = 0.1  # seconds between looks at the process limit's counter
DEFAULT_API = "https://api.anthropic.com"
RELAY_ADDRESS = "127.0.0.1"  # where the API's host name points inside an "api" sandbox
NETRELAY = str(Path(__file__).with_name("netrelay.py"))

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
        network = spec.network or "on"
        api = api_target(env) if network == "api" else None
        out = sandbox_argv(
            out,
            bwrap=bwrap_binary(env.get("PATH")),
            cwd=cwd,
            writable=writable,
            hidden=[*hidden, os.path.dirname(os.path.abspath(spec.log_path))],
            home=(task_home(spec.log_path), home_dir) if home_dir else None,
            network=network,
            hosts=None if api is None else _hosts_file(spec.log_path, api[0]),
        )
        if api is not None:
            out = relay_prefix(api) + out
    if not _has_limits(spec.limits):
        return Isolated(argv=out)
    assert spec.limits is not None
    limiter = Limiter.create(spec.limits, spec.log_path)
    return Isolated(argv=[*limiter.prefix(), *out], limiter=limiter)


def api_target(env: Mapping[str, str]) -> tuple[str, int]:
    """The model API's host and port: `ANTHROPIC_BASE_URL` of the agent's environment, else
    Anthropic's. Raises OSError when the sandbox cannot relay to it (an address that is
    neither a host name nor a loopback address: the sandbox has only `lo`)."""
    url = urlsplit(env.get("ANTHROPIC_BASE_URL") or DEFAULT_API)
    host = url.hostname or ""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = 0
    if not host or not port:
        raise OSError(f"network api: cannot tell the API's host and port from {url.geturl()!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, port
    if not (isinstance(address, ipaddress.IPv4Address) and address.is_loopback):
        raise OSError(f"network api: the API's address {host} is not a name or 127.0.0.0/8")
    return host, port


def relay_prefix(api: tuple[str, int]) -> list[str]:
    """The argv prefix that gives the sandbox a network of its own with only the API in it."""
    host, port = api
    listen = host if _is_ip(host) else RELAY_ADDRESS
    relay = [sys.executable, "-I", "-S", NETRELAY]
    return [*relay, "--target", f"{host}:{port}", "--listen", f"{listen}:{port}", "--"]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _hosts_file(log_path: str, host: str) -> str:
    """The sandbox's /etc/hosts: the API's host name on the relay's address."""
    path = os.path.join(os.path.dirname(os.path.abspath(log_path)), "hosts")
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
    if not _is_ip(host):
        lines.append(f"{RELAY_ADDRESS} {host}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def daemon_paths(home: str, redis_url: str | None) -> list[str]:
    """What a sandbox hides of the daemon: its home, and the Redis socket when `redis.url` is
    a unix socket elsewhere (a path socket is reachable whatever the network)."""
    paths = [home]
    if redis_url and redis_url.startswith("unix://"):
        socket_path = urlsplit(redis_url).path
        if socket_path:
            paths.append(socket_path)
    return paths


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
