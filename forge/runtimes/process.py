"""Detached processes under the shim: start, follow, probe, signal, adopt.

Every runtime runs an attempt the same way: `ProcessRun.start` launches the shim
(`forge.runtimes.shim_launch`: the C one when it builds, else the Python one) in a new session,
hands it the command's exact environment over a pipe, and returns a `RunHandle`. The shim's
(PID, process create_time) pair names the attempt; every probe and signal checks both, so a
reused PID is never taken for it. An attempt's processes die with it or are adopted, never
both: when the shim vanishes without a status (`kill -9`), what is left of its tree is killed
(`tree.kill_remnants`) before the run reports its outcome, before `adopt` reports it gone, and
by `terminate` of a run whose shim is gone, so that a retry never runs beside the old attempt.
A shim killed after it reaped the command, while it cleaned up, left the command's exit record
(`logfile.read_exit_record`): the run reports that outcome, and `adopt` follows such an attempt
to it, rather than an attempt vanished, which would run the finished command again.

One reader thread per run follows the log file (no inotify: an empty read sleeps 1 ms, doubling
up to 50 ms), redacts each line, turns it into notices with the `line_handler` hook and hands
them to the sink. When the status file has appeared and the log is drained, the
`outcome_builder` hook turns the status into the `Outcome` that `wait()` returns, so every
notice has reached the sink before the outcome is known.

`ProcessRun.adopt` re-attaches to a shim started by an earlier daemon. It reads the log from
`offset` (default: the start), so the sink may see lines it saw before the restart; callers that
care remember how far they got or filter duplicates.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import msgspec
import psutil

from actors.runtime import FailureClass, Health, Notice, Outcome, ResourceUsage
from events.redact import redact
from forge.log import get_logger
from forge.runtimes.logfile import (
    MAX_DELAY,
    MIN_DELAY,
    ExitStatus,
    LineReader,
    decode_line,
    exit_record_path_for,
    read_exit_record,
    read_status,
    record_path_for,
    status_path_for,
)
from forge.runtimes.outcome import (
    LineHandler,
    OutcomeBuilder,
    default_line_handler,
    default_outcome,
    redact_notice,
    secret_env_names,
)
from forge.runtimes.shim_launch import find_shim, launch
from forge.runtimes.tree import (
    CpuProbe,
    continue_stopped,
    kill_remnants,
    signal_tree,
    tree_usage,
    verified,
)

__all__ = [
    "LineHandler",
    "OutcomeBuilder",
    "ProcessRun",
    "default_line_handler",
    "default_outcome",
    "find_shim",
    "secret_env_names",
]

Sink = Callable[[Notice], None]

_LIVENESS_INTERVAL = 0.25  # seconds between checks that a quiet shim still exists
_REAP_TIMEOUT = 5.0  # a shim exits right after writing its status

_log = get_logger(__name__)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the process is gone
        return None


class ProcessRun:
    """One attempt running under the shim (a `RunHandle`)."""

    def __init__(
        self,
        pid: int,
        create_time: float,
        log_path: str,
        sink: Sink,
        *,
        line_handler: LineHandler | None = None,
        outcome_builder: OutcomeBuilder | None = None,
        offset: int = 0,
        is_child: bool = False,
    ) -> None:
        """Follow an attempt already started; use `start()` or `adopt()` rather than this."""
        self._pid = pid
        self._create_time = create_time
        self._log_path = log_path
        self._status_path = status_path_for(log_path)
        self._sink = sink
        self._custom_handler = line_handler is not None
        self._line_handler = line_handler or default_line_handler
        self._outcome_builder = outcome_builder or default_outcome
        self._is_child = is_child  # started by this process: it must reap the shim
        self._lock = threading.Lock()
        self._requested: FailureClass | None = None
        self._kill_at: float | None = None
        self._outcome: Outcome | None = None
        self._finished = threading.Event()
        self._detached = threading.Event()
        self._last_output = time.monotonic()
        self._cpu = CpuProbe()
        self._reader = LineReader(log_path, offset)
        self._pidfd = _open_pidfd(pid)  # readable once the shim has exited
        self._thread = threading.Thread(target=self._follow, name=f"forge-run-{pid}", daemon=True)
        self._thread.start()

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        log_path: str,
        sink: Sink,
        env: Mapping[str, str],
        cwd: str | None = None,
        timeout: float | None = None,
        grace: float = 5.0,
        mask_env: Iterable[str] = (),
        line_handler: LineHandler | None = None,
        outcome_builder: OutcomeBuilder | None = None,
    ) -> ProcessRun:
        """Start `argv` under the shim with exactly `env`; raises OSError if the shim cannot start.

        A command that cannot be started (missing binary, bad cwd) is not an error here: the
        run ends at once with a "spawn" outcome.
        """
        pid, create_time, log_path, offset = launch(
            argv,
            log_path=log_path,
            env=env,
            cwd=cwd,
            timeout=timeout,
            grace=grace,
            mask_env=mask_env,
        )
        return cls(
            pid,
            create_time,
            log_path,
            sink,
            line_handler=line_handler,
            outcome_builder=outcome_builder,
            offset=offset,
            is_child=True,
        )

    @classmethod
    def adopt(
        cls,
        pid: int,
        create_time: float,
        log_path: str,
        sink: Sink,
        *,
        line_handler: LineHandler | None = None,
        outcome_builder: OutcomeBuilder | None = None,
        offset: int = 0,
    ) -> ProcessRun | None:
        """Follow a shim an earlier daemon started; None unless it is still that very process.

        An attempt that ended while nobody watched (its status file names `pid`) is adopted
        too: the run replays its log and reports the recorded outcome; so is one whose shim was
        killed after it reaped the command (its exit record names `pid`).
        """
        log_path = os.path.abspath(log_path)
        if not os.path.exists(log_path):
            return None
        status_path = status_path_for(log_path)
        status = read_status(status_path)
        if status is None and verified(pid, create_time) is None:
            status = read_status(status_path)  # written just before it exited?
            if status is None:
                # gone without a status: what is left of its tree must not run beside a retry
                _kill_remnants(pid, create_time, log_path)
                status = read_exit_record(exit_record_path_for(log_path), pid)
                if status is None:
                    return None
        if status is not None and status.pid != pid:
            return None  # the status of some other shim
        return cls(
            pid,
            create_time,
            log_path,
            sink,
            line_handler=line_handler,
            outcome_builder=outcome_builder,
            offset=offset,
        )

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def create_time(self) -> float:
        return self._create_time

    @property
    def log_path(self) -> str:
        return self._log_path

    @property
    def offset(self) -> int:
        """How far into the log the sink has been fed (to adopt later without duplicates)."""
        return self._reader.offset

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once every line has reached the sink; None on timeout or if detached."""
        self._finished.wait(timeout)
        return self._outcome

    def detach(self) -> None:
        """Stop following without touching the processes (a later daemon may adopt them)."""
        self._detached.set()
        self._finished.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def health(self) -> Health:
        since = time.monotonic() - self._last_output
        shim = self._shim()
        if shim is None:
            return Health(alive=False, seconds_since_output=since)
        rss, cpu = self._cpu.sample(shim)
        return Health(alive=True, rss_bytes=rss, cpu_percent=cpu, seconds_since_output=since)

    def resource_usage(self) -> ResourceUsage:
        """The command's process tree (the shim itself is not counted)."""
        shim = self._shim()
        return ResourceUsage() if shim is None else tree_usage(shim)

    def pause(self) -> None:
        """SIGSTOP the command's process tree; the shim keeps running and stops its clock."""
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_tree(signal.SIGCONT)

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None:
        """SIGTERM the command, SIGKILL it after `grace` s (at once if `grace` <= 0).

        Returns at once: the reader thread does the SIGKILL. A second call may shorten the
        grace; the failure class of the first call stands.
        """
        kill_at = time.monotonic() + max(grace, 0.0)
        with self._lock:
            if self._outcome is not None:
                return
            first = self._requested is None
            if first:
                self._requested = failure
            if self._kill_at is not None and self._kill_at <= kill_at:
                return
            self._kill_at = kill_at
        if grace <= 0:
            self._force_kill()
        elif first:
            shim = self._shim()
            if shim is not None:
                with contextlib.suppress(psutil.Error):
                    shim.send_signal(signal.SIGTERM)  # forwarded to the command's group
                continue_stopped(shim)  # a paused command must run to see it

    # internals

    def _shim(self) -> psutil.Process | None:
        return verified(self._pid, self._create_time)

    def _signal_tree(self, signum: int) -> None:
        shim = self._shim()
        if shim is not None:
            signal_tree(shim, signum)

    def _force_kill(self) -> None:
        shim = self._shim()
        if shim is not None:
            signal_tree(shim, signal.SIGKILL)  # stopped (paused) processes die too
        elif read_status(self._status_path) is None:  # the shim was killed: kill what it left
            _kill_remnants(self._pid, self._create_time, self._log_path)

    def _deliver(self, lines: list[bytes]) -> None:
        self._last_output = time.monotonic()
        for raw in lines:
            line = redact(decode_line(raw))
            try:
                for notice in self._line_handler(line):
                    self._sink(redact_notice(notice) if self._custom_handler else notice)
            except Exception:
                _log.exception("runtime.sink_failed", pid=self._pid, log=self._log_path)

    def _ended(self) -> tuple[bool, ExitStatus | None]:
        """(ended, status): status None with ended True means the shim vanished without one."""
        status = read_status(self._status_path)
        if status is not None:
            return True, status
        if self._is_child:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self._pid, os.WNOHANG)[0] == 0:
                    return False, None
                self._is_child = False  # reaped: the PID is no longer ours
        elif self._shim() is not None:
            return False, None
        return True, read_status(self._status_path)  # written just before it exited?

    def _exit_record(self) -> ExitStatus | None:
        """How the command ended, if the shim reaped it before it vanished."""
        record = read_exit_record(exit_record_path_for(self._log_path), self._pid)
        if record is not None:
            _log.warning(
                "runtime.exit_record_used",
                pid=self._pid,
                log=self._log_path,
                exit_code=record.exit_code,
                signal=record.signal,
            )
        return record

    def _follow(self) -> None:
        delay = MIN_DELAY
        next_liveness = 0.0
        status: ExitStatus | None = None
        try:
            while not self._detached.is_set():
                lines = self._reader.read()
                if lines is not None:
                    if lines:
                        self._deliver(lines)
                    delay = MIN_DELAY
                    continue
                now = time.monotonic()
                kill_at = self._kill_at
                if kill_at is not None and now >= kill_at:
                    # repeated until the shim reports, so that a command still being spawned
                    # when the deadline passed is killed as soon as it appears
                    self._force_kill()
                if os.path.exists(self._status_path) or now >= next_liveness:
                    next_liveness = now + _LIVENESS_INTERVAL
                    ended, status = self._ended()
                    if ended:
                        if status is None:  # the shim vanished: its tree goes before the news
                            _kill_remnants(self._pid, self._create_time, self._log_path)
                            status = self._exit_record()
                        self._finish(status)
                        return
                if self._idle(delay):
                    next_liveness = 0.0
                delay = min(delay * 2, MAX_DELAY)
        except Exception:  # never leave wait() hanging, nor the attempt running past its end
            _log.exception("runtime.reader_failed", pid=self._pid, log=self._log_path)
            with contextlib.suppress(Exception):
                self._force_kill()
            self._finish(status, drain=False)
        finally:
            self._reader.close()
            if self._pidfd is not None:
                os.close(self._pidfd)

    def _idle(self, delay: float) -> bool:
        """Sleep up to `delay` seconds; True if the shim exited meanwhile."""
        if self._pidfd is None:
            self._detached.wait(delay)
            return False
        return bool(select.select([self._pidfd], [], [], delay)[0])

    def _finish(self, status: ExitStatus | None, drain: bool = True) -> None:
        if drain:
            while (lines := self._reader.read()) is not None:
                if lines:
                    self._deliver(lines)
            if (rest := self._reader.rest()) is not None:
                self._deliver([rest])
        self._reap()
        with self._lock:
            requested = self._requested
        outcome = self._outcome_builder(status, requested)
        self._outcome = msgspec.structs.replace(
            outcome,
            reason=redact(outcome.reason),
            result=None if outcome.result is None else redact(outcome.result),
        )
        self._finished.set()

    def _reap(self) -> None:
        if not self._is_child:
            return
        deadline = time.monotonic() + _REAP_TIMEOUT
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(self._pid, os.WNOHANG)[0] == 0:
                if time.monotonic() >= deadline:
                    return
                time.sleep(MIN_DELAY)
        self._is_child = False


def _kill_remnants(pid: int, create_time: float, log_path: str) -> None:
    killed = kill_remnants(pid, create_time, record_path_for(log_path))
    if killed:
        _log.warning("runtime.remnants_killed", pid=pid, log=log_path, processes=killed)
