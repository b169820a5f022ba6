"""The daemon as an operating-system process: its pid file, its lock, starting it detached and
waiting for it to exit.

Files under `$FORGE_HOME`: `daemon.lock` (an exclusive `flock` held for the daemon's whole life,
so a second daemon on the same home is refused and a crashed one releases it with its death),
`daemon.pid` (JSON: pid, the process's create time — a reused pid is never taken for the daemon
—, start time, node id, namespace) and `daemon.log` (its output, JSON lines); all 0600, and the
home 0700 when Forge creates it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec
import psutil

from forge.errors import DaemonError
from forge.private_files import open_private_append, private_directory, write_private

__all__ = [
    "DaemonFiles",
    "PidRecord",
    "alive",
    "hold_lock",
    "spawn_background",
    "wait_gone",
]

_CREATE_TIME_TOLERANCE = 0.05


class PidRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What `daemon.pid` holds."""

    pid: int
    create_time: float
    started_at: float
    node_id: str
    namespace: str


class DaemonFiles:
    """The daemon's files under one FORGE_HOME."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.pidfile = self.home / "daemon.pid"
        self.lockfile = self.home / "daemon.lock"
        self.logfile = self.home / "daemon.log"
        self.nodefile = self.home / "node-id"

    def read(self) -> PidRecord | None:
        """The pid file's record (live or not), or None without a readable one."""
        try:
            return msgspec.json.decode(self.pidfile.read_bytes(), type=PidRecord)
        except (OSError, msgspec.DecodeError):
            return None

    def write(self, record: PidRecord) -> None:
        tmp = self.pidfile.with_suffix(".pid.tmp")
        write_private(tmp, msgspec.json.encode(record))
        tmp.replace(self.pidfile)

    def remove(self, record: PidRecord) -> None:
        """Remove the pid file if it still holds `record`."""
        if self.read() == record:
            with contextlib.suppress(FileNotFoundError):
                self.pidfile.unlink()

    def running(self) -> tuple[PidRecord | None, PidRecord | None]:
        """(the live daemon's record, None) or (None, a stale record that was just removed)."""
        record = self.read()
        if record is None:
            return None, None
        if alive(record.pid, record.create_time):
            return record, None
        with contextlib.suppress(DaemonError), hold_lock(self):
            self.remove(record)  # only while no daemon holds the lock
            return None, record
        return None, None


def alive(pid: int, create_time: float | None) -> bool:
    """Whether process `pid` runs and (if given) was created at `create_time`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < (
            _CREATE_TIME_TOLERANCE
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_create_time(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


@contextlib.contextmanager
def hold_lock(files: DaemonFiles) -> Iterator[None]:
    """Hold the daemon lock of this home; raises DaemonError if another process holds it."""
    private_directory(files.home)
    fd = os.open(files.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = files.read()
            who = f" (pid {record.pid})" if record is not None else ""
            raise DaemonError(f"a daemon is already running{who}") from None
        yield
    finally:
        os.close(fd)


def spawn_background(
    files: DaemonFiles, argv: list[str], env: Mapping[str, str], timeout: float = 30.0
) -> PidRecord:
    """Start `argv` (a foreground daemon) detached, its output appended to `daemon.log`, and
    wait until it has written its pid file; raises DaemonError if it exits first."""
    private_directory(files.home)
    with open_private_append(files.logfile) as log:
        offset = log.tell()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=files.home,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = files.read()
        if record is not None and record.pid == proc.pid:
            return record
        if proc.poll() is not None:
            raise DaemonError(f"the daemon exited at once: {_last_line(files.logfile, offset)}")
        time.sleep(0.05)
    raise DaemonError(f"the daemon did not start within {timeout:.0f} s (see {files.logfile})")


def _last_line(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line]
    if not lines:
        return "no output"
    last = lines[-1]
    with contextlib.suppress(msgspec.DecodeError):
        entry = msgspec.json.decode(last)
        if isinstance(entry, dict) and "event" in entry:
            return str(entry.get("error") or entry["event"])
    return last


def wait_gone(pid: int, create_time: float, timeout: float) -> bool:
    """Wait up to `timeout` seconds for the process to exit (a zombie counts as exited);
    True once it has."""
    deadline = time.monotonic() + timeout
    while alive(pid, create_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def python_argv(*args: str) -> list[str]:
    """`python -m forge ARGS` with this interpreter."""
    return [sys.executable, "-m", "forge", *args]
