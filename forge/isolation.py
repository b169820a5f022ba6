"""The isolation a task asks for (flags, a tasks file) and the `[isolation]` settings, checked
and resolved into the fields its definition records: `sandbox`, `network` and `limits`.

Resolved once, at submit, like the permission policy (`forge.permissions`): a retry or a replay
runs under what the task was submitted with. A task's own value replaces the default. The
sandbox is bubblewrap around a process runtime (shell, claude); limits are enforced for those
and passed to the container runtime; a default the task's runtime cannot honour is not applied,
an explicit request it cannot honour is refused with one line. How they are enforced:
`forge.runtimes.isolation`, docs/isolation.md.
"""

from __future__ import annotations

import math
import re

import msgspec

from events.event_base import Limits
from forge.errors import InvalidTask
from forge.settings import Settings

__all__ = [
    "LIMITED_RUNTIMES",
    "NETWORKS",
    "SANDBOXED_RUNTIMES",
    "Isolation",
    "parse_memory",
    "resolve_isolation",
]

SANDBOXED_RUNTIMES = frozenset({"shell", "claude"})
"""Runtimes whose commands run in the bubblewrap sandbox when asked."""
LIMITED_RUNTIMES = frozenset({"shell", "claude", "container"})
"""Runtimes that enforce memory, CPU and process limits."""
NETWORKS = ("on", "off", "api")

MIN_MEMORY_MB = 4  # less and no interpreter starts: a typo, not a limit
MAX_MEMORY_MB = 2**30  # 1 PiB
MAX_CPUS = 1024.0
MAX_PIDS = 4_194_304  # the kernel's own ceiling (pid_max)
_MEMORY = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*")
_FACTORS = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024**2}


class Isolation(msgspec.Struct, frozen=True, kw_only=True):
    """The definition's isolation fields."""

    sandbox: bool = False
    network: str | None = None
    limits: Limits | None = None


def parse_memory(value: str | int, what: str = "memory") -> int:
    """A memory size in MiB: `512M`, `2G`, `1.5g`, `65536k`, `512MiB`; a bare number is MiB.
    Raises InvalidTask with one line."""
    text = str(value)
    match = _MEMORY.fullmatch(text) if len(text) <= 40 else None
    if match is None:
        raise InvalidTask(f"{what} {text[:40]!r} is not a size (e.g. 512M, 2G)")
    mb = float(match.group(1)) * _FACTORS[match.group(2).lower()]
    if not math.isfinite(mb) or not MIN_MEMORY_MB <= mb <= MAX_MEMORY_MB:
        raise InvalidTask(f"{what} {text!r} is not between {MIN_MEMORY_MB}M and 1P")
    return math.ceil(mb)


def _cpus(value: float | None, what: str) -> float | None:
    if value is not None and (not math.isfinite(value) or not 0 < value <= MAX_CPUS):
        raise InvalidTask(f"{what} must be a number > 0 and <= {MAX_CPUS:g} (got {value})")
    return value


def _pids(value: int | None, what: str) -> int | None:
    if value is not None and not 1 <= value <= MAX_PIDS:
        raise InvalidTask(f"{what} must be between 1 and {MAX_PIDS} (got {value})")
    return value


def resolve_isolation(
    *,
    runtime: str,
    sandbox: bool | None,
    network: str | None,
    memory: str | int | None,
    cpus: float | None,
    pids: int | None,
    settings: Settings,
    where: str = "",
) -> Isolation:
    """The effective isolation of one task; `None` means "not given" (the settings' default
    applies where the runtime can honour it). Raises InvalidTask with one line."""
    if network is not None and network not in NETWORKS:
        raise InvalidTask(f"{where}unknown network {network[:40]!r} (known: {', '.join(NETWORKS)})")
    defaults = settings.isolation
    if sandbox and runtime not in SANDBOXED_RUNTIMES:
        raise InvalidTask(
            f"{where}the sandbox applies to the shell and claude runtimes, not {runtime!r}"
        )
    sandboxed = (defaults.sandbox if sandbox is None else sandbox) and runtime in SANDBOXED_RUNTIMES
    if network is not None and not sandboxed and runtime != "container":
        raise InvalidTask(f"{where}--network applies to sandboxed tasks (add --sandbox)")
    given = memory is not None or cpus is not None or pids is not None
    if given and runtime not in LIMITED_RUNTIMES:
        raise InvalidTask(
            f"{where}limits (memory, cpus, pids) apply to the shell, claude and container "
            f"runtimes, not {runtime!r}"
        )
    limits = None
    if runtime in LIMITED_RUNTIMES:
        memory = defaults.memory if memory is None else memory
        limits = Limits(
            memory_mb=None if memory is None else parse_memory(memory, f"{where}memory"),
            cpus=_cpus(defaults.cpus if cpus is None else cpus, f"{where}cpus"),
            pids=_pids(defaults.pids if pids is None else pids, f"{where}pids"),
        )
        if limits == Limits():
            limits = None
    effective_network = None
    if sandboxed or runtime == "container":
        effective_network = network or defaults.network
    return Isolation(sandbox=sandboxed, network=effective_network, limits=limits)
