"""The processes under a shim: found by (PID, create time), signalled, measured with psutil.

The shim is identified by its PID *and* its create time, so a PID the kernel has reused is
never taken for it. The command runs in its own process group under the shim; signals go to
every group its processes belong to, never to the shim's own group (the shim must survive to
write the status).
"""

from __future__ import annotations

import contextlib
import os

import psutil

from actors.runtime import ResourceUsage

__all__ = ["CpuProbe", "descendants", "signal_tree", "tree_usage", "verified"]

CREATE_TIME_TOLERANCE = 0.01  # one clock tick: the resolution of a process's start time


def verified(pid: int, create_time: float) -> psutil.Process | None:
    """The process `pid` if it is the one started at `create_time` and has not ended."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def descendants(shim: psutil.Process) -> list[psutil.Process]:
    """The command's processes (the shim itself excluded)."""
    try:
        return shim.children(recursive=True)
    except psutil.Error:
        return []


def signal_tree(shim: psutil.Process, signum: int) -> None:
    """Signal every process under the shim and every process group they are in."""
    groups: set[int] = set()
    for proc in descendants(shim):
        with contextlib.suppress(OSError, psutil.Error):
            group = os.getpgid(proc.pid)
            if group == shim.pid:  # forked but not yet in its own group: spare the shim
                proc.send_signal(signum)
            else:
                groups.add(group)
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, signum)


def tree_usage(shim: psutil.Process) -> ResourceUsage:
    """Memory, CPU time (reaped children's included) and process count under the shim."""
    rss, cpu, count = 0, 0.0, 0
    for proc in descendants(shim):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            rss += proc.memory_info().rss
            cpu += times.user + times.system + times.children_user + times.children_system
            count += 1
    return ResourceUsage(rss_bytes=rss, cpu_seconds=cpu, processes=count)


class CpuProbe:
    """Resident memory and CPU percentage of a tree, CPU measured since the previous probe."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}  # kept: cpu_percent compares with the last

    def sample(self, shim: psutil.Process) -> tuple[int, float]:
        rss, cpu = 0, 0.0
        live: dict[int, psutil.Process] = {}
        for proc in descendants(shim):
            probe = self._procs.get(proc.pid, proc)
            with contextlib.suppress(psutil.Error):
                rss += probe.memory_info().rss
                cpu += probe.cpu_percent(interval=None)  # 0.0 on a process's first probe
                live[proc.pid] = probe
        self._procs = live
        return rss, cpu
