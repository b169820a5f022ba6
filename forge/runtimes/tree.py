"""The processes under a shim: found by (PID, create time), signalled, measured with psutil.

The shim is identified by its PID *and* its create time, so a PID the kernel has reused is
never taken for it. The command runs in its own process group under the shim; signals go to
every group its processes belong to, never to the shim's own group (the shim must survive to
write the status).

Should the shim die without a status (`kill -9`), `kill_remnants` kills what is left of the
attempt before anyone records its end, so that a retry never runs beside it: every process of
the shim's session (the shim was its leader, and Linux does not reuse the number of a session
that still has members), every child the shim listed in its record file (daemonized processes
it had adopted as their subreaper), and all their descendants.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import msgspec
import psutil

from actors.runtime import ResourceUsage

__all__ = [
    "CpuProbe",
    "descendants",
    "kill_remnants",
    "signal_tree",
    "start_ticks",
    "tree_usage",
    "verified",
]

CREATE_TIME_TOLERANCE = 0.01  # one clock tick: the resolution of a process's start time
_KILL_TIMEOUT = 5.0  # seconds to wait for the remnants of an attempt to die
_KILL_POLL = 0.005

_record_decoder = msgspec.json.Decoder(list[tuple[int, int]])


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


def continue_stopped(shim: psutil.Process) -> None:
    """SIGCONT the processes under the shim that are stopped (a paused command, so that it sees
    a signal sent to it), and no other: a running container engine's client forwards every
    signal it gets to its container, and one forwarded as the container ends fails loudly."""
    for proc in descendants(shim):
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_STOPPED:
                proc.send_signal(signal.SIGCONT)


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


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (as the shim records it); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _recorded(record_path: str) -> list[tuple[int, int]]:
    try:
        with open(record_path, "rb") as f:
            return _record_decoder.decode(f.read())
    except (OSError, msgspec.DecodeError):
        return []


def _session_is_ours(shim_pid: int, shim_create_time: float) -> bool:
    """True unless the number `shim_pid` now names another process (and so another session)."""
    try:
        proc = psutil.Process(shim_pid)
        return abs(proc.create_time() - shim_create_time) <= CREATE_TIME_TOLERANCE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _remnants(shim_pid: int, shim_create_time: float, record_path: str) -> list[psutil.Process]:
    roots: list[psutil.Process] = []
    for pid, ticks in _recorded(record_path):
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if start_ticks(pid) == ticks:
                roots.append(proc)
    if _session_is_ours(shim_pid, shim_create_time):
        for proc in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if proc.pid != shim_pid and os.getsid(proc.pid) == shim_pid:
                    roots.append(proc)
    found: dict[int, psutil.Process] = {}
    for root in roots:
        for proc in (root, *descendants(root)):
            found.setdefault(proc.pid, proc)
    found.pop(os.getpid(), None)
    return [proc for proc in found.values() if _alive(proc)]


def kill_remnants(shim_pid: int, shim_create_time: float, record_path: str) -> int:
    """SIGKILL every process left of the attempt whose shim (gone) was `shim_pid`; how many.

    The processes are stopped first, and looked for again until no new one appears, so that
    one forking meanwhile cannot leave a child behind; returns once they have all died.
    """
    deadline = time.monotonic() + _KILL_TIMEOUT
    stopped: dict[int, psutil.Process] = {}
    while time.monotonic() < deadline:
        found = _remnants(shim_pid, shim_create_time, record_path)
        new = [proc for proc in found if proc.pid not in stopped]
        if not new:
            break
        for proc in new:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGSTOP)  # psutil checks it is still that process
                stopped[proc.pid] = proc
    for proc in stopped.values():
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    while any(_alive(proc) for proc in stopped.values()) and time.monotonic() < deadline:
        time.sleep(_KILL_POLL)
    return len(stopped)
