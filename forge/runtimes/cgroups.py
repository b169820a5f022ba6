"""Kernel-enforced limits of one attempt: a cgroup of its own where the machine offers one, else
rlimits.

`detect()` looks once at what this machine has: cgroup v2 (the unified hierarchy, its
`memory`, `cpu` and `pids` controllers enabled for Forge's subtree), cgroup v1 (a hierarchy per
controller, each mounted under /sys/fs/cgroup), or neither (then rlimits, which bound each
process on its own, not the tree). `Limiter.create` makes the attempt's cgroup and writes its
limits; the command joins it before it is exec'd (`Limiter.prefix`, a `/bin/sh` line run by
the shim), so every process the attempt forks is counted — and the shim itself is not, so it
outlives an OOM kill and records how the command ended.

Where the cgroup lives is written beside the attempt's log (`<log>.limits.json`), so a daemon
restarted in another cgroup finds it again (`Limiter.load`). When the attempt ends,
`Limiter.events` reads what the kernel counted (processes killed for memory, forks refused at
the process limit, peak memory) and `Limiter.remove` kills what is left in the cgroup and
removes it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import msgspec

from events.event_base import Limits
from forge.private_files import private_directory

__all__ = ["CGROUP_ROOT", "Detected", "LimitEvents", "Limiter", "detect"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
_JOIN = (
    'while [ "$1" != -- ]; do echo $$ > "$1" || { echo "forge: cannot join the cgroup $1" >&2; '
    'exit 125; }; shift; done; shift; exec "$@"'
)
_RLIMITS = (
    "import os,resource as r,sys\n"
    "m,p=int(sys.argv[1]),int(sys.argv[2])\n"
    "if m: r.setrlimit(r.RLIMIT_AS,(m,m))\n"
    "if p: r.setrlimit(r.RLIMIT_NPROC,(p,p))\n"
    "os.execvp(sys.argv[3],sys.argv[3:])"
)


class Detected(msgspec.Struct, frozen=True, kw_only=True):
    """What enforces limits here: "v2", "v1" or "rlimit", and where Forge's cgroups go
    (v2: one directory; v1: one per controller)."""

    mode: str
    bases: dict[str, str] = {}  # controller ("unified" for v2) -> the parent of attempt cgroups


class LimitEvents(msgspec.Struct, frozen=True, kw_only=True):
    """What the kernel counted for one attempt's cgroup."""

    oom_kills: int = 0  # processes killed for going over the memory limit
    pids_refused: int = 0  # forks refused at the process limit
    peak_bytes: int = 0  # highest memory use seen (0: not known)
    throttled: int = 0  # CPU periods in which the attempt was held back at its share


def _own_paths() -> dict[str, str]:
    """This process's cgroup per controller ("" for v2's unified line), from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            for name in names.split(",") if names else [""]:
                out[name] = path
    return out


def _v2_base() -> str | None:
    """Forge's parent cgroup on the unified hierarchy, with the controllers enabled; None when
    v2 is not mounted at /sys/fs/cgroup or lacks a controller."""
    root = CGROUP_ROOT
    try:
        available = set((root / "cgroup.controllers").read_text().split())
    except OSError:
        return None
    if not set(CONTROLLERS) <= available:
        return None
    base = root / "forge"
    try:
        base.mkdir(exist_ok=True)
        wanted = " ".join(f"+{c}" for c in CONTROLLERS)
        for parent in (root, base):  # the root holds no process constraint; forge/ holds none
            if not set(CONTROLLERS) <= set((parent / "cgroup.subtree_control").read_text().split()):
                (parent / "cgroup.subtree_control").write_text(wanted)
    except OSError:
        return None
    return str(base)


def _v1_bases() -> dict[str, str]:
    own = _own_paths()
    bases: dict[str, str] = {}
    for controller in CONTROLLERS:
        mount = CGROUP_ROOT / controller
        if not (mount / "cgroup.procs").exists() or controller not in own:
            continue
        base = mount / own[controller].lstrip("/") / "forge"
        try:
            base.mkdir(exist_ok=True)
        except OSError:
            continue
        bases[controller] = str(base)
    return bases


@functools.cache
def detect() -> Detected:
    """How limits are enforced on this machine (looked at once per process)."""
    if os.geteuid() == 0:  # a cgroup of one's own needs root here (no systemd to delegate)
        unified = _v2_base()
        if unified is not None:
            return Detected(mode="v2", bases={"unified": unified})
        v1 = _v1_bases()
        if set(CONTROLLERS) <= set(v1):
            return Detected(mode="v1", bases=v1)
    return Detected(mode="rlimit")


def _read_int(path: Path, key: str | None = None) -> int:
    """An integer file, or the value of `key` in a flat-keyed file; 0 if absent."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    if key is None:
        return int(text.split()[0]) if text.split() and text.split()[0].isdigit() else 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


class Limiter(msgspec.Struct, kw_only=True):
    """The limits of one attempt and where the kernel enforces them."""

    mode: str  # "v2", "v1" or "rlimit"
    limits: Limits
    dirs: dict[str, str] = {}  # controller ("unified" for v2) -> the attempt's cgroup

    @classmethod
    def create(cls, limits: Limits, log_path: str, detected: Detected | None = None) -> Limiter:
        """The attempt's cgroup with its limits written (rlimits: nothing to create); the
        record beside the log says where. Raises OSError if the kernel refuses."""
        found = detected or detect()
        name = f"attempt-{hashlib.sha256(os.path.abspath(log_path).encode()).hexdigest()[:16]}"
        dirs = {c: os.path.join(base, name) for c, base in found.bases.items()}
        limiter = cls(mode=found.mode, limits=limits, dirs=dirs)
        record = _record_path(log_path)
        private_directory(os.path.dirname(record))  # 0700, as the shim's launch makes it
        Path(record).write_bytes(msgspec.json.encode(limiter))
        try:
            for path in dirs.values():
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path)
            limiter._write_limits()
        except OSError:
            limiter.remove()
            raise
        return limiter

    @classmethod
    def load(cls, log_path: str) -> Limiter | None:
        """The limiter an earlier daemon created for the attempt logging to `log_path`."""
        try:
            return msgspec.json.decode(Path(_record_path(log_path)).read_bytes(), type=cls)
        except (OSError, msgspec.DecodeError):
            return None

    def _write_limits(self) -> None:
        lim = self.limits
        if self.mode == "v2":
            d = Path(self.dirs["unified"])
            if lim.memory_mb is not None:
                (d / "memory.max").write_text(str(lim.memory_mb * 2**20))
                with contextlib.suppress(OSError):  # no swap accounting: nothing to forbid
                    (d / "memory.swap.max").write_text("0")
            if lim.cpus is not None:
                (d / "cpu.max").write_text(f"{_quota(lim.cpus)} {CPU_PERIOD_US}")
            if lim.pids is not None:
                (d / "pids.max").write_text(str(lim.pids))
        elif self.mode == "v1":
            if lim.memory_mb is not None:
                memory = Path(self.dirs["memory"])
                (memory / "memory.limit_in_bytes").write_text(str(lim.memory_mb * 2**20))
                with contextlib.suppress(OSError):  # swap must not extend the limit
                    (memory / "memory.memsw.limit_in_bytes").write_text(str(lim.memory_mb * 2**20))
            if lim.cpus is not None:
                cpu = Path(self.dirs["cpu"])
                (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(_quota(lim.cpus)))
            if lim.pids is not None:
                (Path(self.dirs["pids"]) / "pids.max").write_text(str(lim.pids))

    def prefix(self) -> list[str]:
        """The argv prefix that puts the command under the limits before it is exec'd."""
        if self.mode == "rlimit":
            memory = (self.limits.memory_mb or 0) * 2**20
            return [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _RLIMITS,
                str(memory),
                str(self.limits.pids or 0),
            ]
        procs = [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]
        return ["/bin/sh", "-c", _JOIN, "forge-limits", *procs, "--"]

    def events(self) -> LimitEvents:
        """What the kernel counted so far (rlimits count nothing)."""
        if self.mode == "v2":
            d = Path(self.dirs["unified"])
            return LimitEvents(
                oom_kills=_read_int(d / "memory.events", "oom_kill"),
                pids_refused=_read_int(d / "pids.events", "max"),
                peak_bytes=_read_int(d / "memory.peak"),
                throttled=_read_int(d / "cpu.stat", "nr_throttled"),
            )
        if self.mode == "v1":
            memory, cpu, pids = (Path(self.dirs[c]) for c in ("memory", "cpu", "pids"))
            return LimitEvents(
                oom_kills=_read_int(memory / "memory.oom_control", "oom_kill"),
                pids_refused=_read_int(pids / "pids.events", "max"),
                peak_bytes=_read_int(memory / "memory.max_usage_in_bytes"),
                throttled=_read_int(cpu / "cpu.stat", "nr_throttled"),
            )
        return LimitEvents()

    def processes(self) -> list[int]:
        """The PIDs in the attempt's cgroup (rlimits: none known)."""
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                return [int(p) for p in Path(d, "cgroup.procs").read_text().split()]
        return []

    def kill(self, timeout: float = 5.0) -> int:
        """SIGKILL every process in the cgroup until it is empty (a fork bomb refills what is
        killed, up to its limit); how many were killed."""
        killed = 0
        unified = self.dirs.get("unified")
        if unified is not None:
            with contextlib.suppress(OSError):  # Linux 5.14+: the kernel kills them all at once
                Path(unified, "cgroup.kill").write_text("1")
        deadline = time.monotonic() + timeout
        while (pids := self.processes()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
            time.sleep(0.005)
        return killed

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (idempotent; the record stays, naming
        directories that are gone)."""
        self.kill()
        for d in self.dirs.values():
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: a killed process is not gone yet
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.005)


def _quota(cpus: float) -> int:
    return max(1000, round(cpus * CPU_PERIOD_US))


def _record_path(log_path: str) -> str:
    return os.path.splitext(os.path.abspath(log_path))[0] + ".limits.json"
