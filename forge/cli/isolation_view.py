"""How `forge task show` presents a task's isolation: its sandbox, network and limits."""

from __future__ import annotations

from events.types import TaskDefinition

__all__ = ["isolation_lines", "limits_text"]


def limits_text(d: TaskDefinition) -> str:
    """`memory 512 MiB, cpus 0.5, pids 256`, or "" when the task has no limits."""
    lim = d.limits
    if lim is None:
        return ""
    parts = []
    if lim.memory_mb is not None:
        parts.append(f"memory {lim.memory_mb} MiB")
    if lim.cpus is not None:
        parts.append(f"cpus {lim.cpus:g}")
    if lim.pids is not None:
        parts.append(f"pids {lim.pids}")
    return ", ".join(parts)


def isolation_lines(d: TaskDefinition) -> list[str]:
    """The sandbox line and the limits line, each only when the task has them."""
    lines = []
    if d.sandbox:
        network = d.network or "on"
        note = " (the model API's host and port only)" if network == "api" else ""
        lines.append(f"sandbox: bubblewrap   network: {network}{note}")
    if limits := limits_text(d):
        lines.append(f"limits: {limits}")
    return lines
