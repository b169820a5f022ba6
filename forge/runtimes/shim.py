"""The shim every attempt runs under: a tiny supervisor that outlives the daemon.

    python -I -S forge/runtimes/shim.py --status STATUS --log LOG [--cwd DIR] [--timeout S]
        [--grace S] [--mask-env NAME ...] [--env-stdin] -- argv...

(`python -m forge.runtimes.shim ...` works too.) The daemon starts the shim in a new session,
so that killing the daemon, even with SIGKILL, neither kills nor SIGPIPEs the agent. The shim:

* reads the child's environment as a JSON object from stdin when `--env-stdin` is given (so the
  child gets exactly that mapping: the shim's own interpreter adds variables such as
  `LC_CTYPE` to its environment, and secrets stay out of the shim's command line), then runs
  `argv` in its own process group with stdin from /dev/null;
* copies the child's stdout and stderr, merged, to LOG (appending), masking the values of the
  `--mask-env` variables so that those secrets never reach the disk;
* stops the child's process group after `--timeout` seconds (SIGTERM, then SIGKILL after
  `--grace`); time the child spends stopped (SIGSTOP) does not count;
* forwards SIGTERM, SIGINT and SIGHUP it receives to the child's process group;
* when the child has exited, kills what is left of its process group (background processes
  must not outlive their attempt) and writes STATUS atomically (temporary file, then rename)
  as JSON: pid, exit_code, signal, timed_out, stop_signal, started_at, ended_at, spawn_error.

Only the standard library is used: the shim starts with `-I -S` (no site-packages) to start
fast and to ignore any PYTHON* variable of the agent's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from types import FrameType

_MIN_SECRET_LEN = 6  # as in events.redact: shorter values would mask ordinary words
_MASK = b"***"
_CHUNK = 1 << 16
_TICK = 0.1  # seconds between checks of the child's state while it is quiet
_DRAIN_AFTER_EXIT = 1.0  # how long to wait for the pipe's end once the group is killed
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Masker:
    """Replace secret values in a byte stream, even when a value is split across chunks."""

    def __init__(self, secrets: list[bytes]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LEN}, key=len)[::-1]
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """Mask what can be masked now; hold back a tail that may start a secret."""
        if not self._secrets:
            return data
        buf = self._mask(self._held + data)
        hold = self._partial_suffix(buf)
        self._held = buf[len(buf) - hold :]
        return buf[: len(buf) - hold]

    def flush(self) -> bytes:
        """Everything still held back (at the end of the stream)."""
        out, self._held = self._held, b""
        return out

    def _mask(self, buf: bytes) -> bytes:
        for secret in self._secrets:
            buf = buf.replace(secret, _MASK)
        return buf

    def _partial_suffix(self, buf: bytes) -> int:
        """Length of the longest end of `buf` that is the beginning of a secret."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(buf)), longest, -1):
                if buf.endswith(secret[:size]):
                    longest = size
                    break
        return longest


class Shim:
    """One attempt: spawn, copy output, enforce the timeout, report."""

    def __init__(self, opts: argparse.Namespace, env: dict[str, str] | None) -> None:
        self.opts = opts
        self.env = env
        self.started_at = time.time()
        self.child: subprocess.Popen[bytes] | None = None
        self.stop_signal: int | None = None
        self.timed_out = False
        self.wakeup = -1
        source = env if env is not None else dict(os.environ)
        values = [source[name].encode() for name in opts.mask_env if source.get(name)]
        self.masker = Masker(values)

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = signum
        if self.child is not None:
            self._signal_group(signum)

    def run(self) -> int:
        for signum in _FORWARDED:
            signal.signal(signum, self.forward)
        # any signal, SIGCHLD above all, wakes the select() below at once
        self.wakeup, wakeup_write = os.pipe()
        for fd in (self.wakeup, wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, _ignore)
        log = os.open(self.opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self.child = self._spawn()
        except OSError as e:
            target = e.filename if e.filename is not None else self.opts.argv[0]
            return self._finish(
                None, None, f"cannot start {self.opts.argv[0]!r}: {e.strerror or e}: {target}"
            )
        if self.stop_signal is not None:  # a stop request raced with the spawn
            self._signal_group(self.stop_signal)
        try:
            exit_code, killed_by = self._supervise(log)
        finally:
            os.close(log)
        return self._finish(exit_code, killed_by, None)

    def _spawn(self) -> subprocess.Popen[bytes]:
        cwd = self.opts.cwd
        if cwd is not None and not os.path.isdir(cwd):
            raise NotADirectoryError(20, "no such directory", cwd)
        return subprocess.Popen(
            self.opts.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=self.env,
            process_group=0,
        )

    def _supervise(self, log: int) -> tuple[int | None, int | None]:
        child = self.child
        assert child is not None
        assert child.stdout is not None
        pipe: int | None = child.stdout.fileno()
        timeout = self.opts.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        kill_at: float | None = None
        stopped_since: float | None = None
        status: int | None = None
        drain_until: float | None = None
        last_check = 0.0
        while pipe is not None or status is None:
            now = time.monotonic()
            wait = _TICK
            if deadline is not None and stopped_since is None:
                wait = max(0.0, min(_TICK, deadline - now))
            watched = [self.wakeup] if pipe is None else [self.wakeup, pipe]
            ready, _, _ = select.select(watched, [], [], wait)
            if self.wakeup in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 512)
                last_check = 0.0  # a child stopped, continued or ended: look now
            if pipe in ready:
                data = os.read(pipe, _CHUNK)
                if data:
                    _write_all(log, self.masker.feed(data))
                else:
                    pipe = None  # closed by every writer; keep supervising the child
            now = time.monotonic()
            if ready and now - last_check < _TICK:
                continue  # busy output: check the child's state once per tick only
            last_check = now
            if status is None:
                status, stopped_since, deadline = self._poll(child.pid, stopped_since, deadline)
                if status is not None:
                    # the child is gone: its background processes go with it
                    child.returncode = 0  # reaped here; keeps Popen from waiting again
                    self._signal_group(signal.SIGKILL)
                    drain_until = now + _DRAIN_AFTER_EXIT
                    continue
            elif drain_until is not None and now >= drain_until:
                break  # a process outside the group holds the pipe open: stop waiting
            if deadline is not None and now >= deadline and stopped_since is None:
                self.timed_out = True
                deadline = None
                kill_at = now + self.opts.grace
                self._signal_group(signal.SIGTERM)
            if kill_at is not None and now >= kill_at:
                kill_at = None
                self._signal_group(signal.SIGKILL)
        _write_all(log, self.masker.flush())
        assert status is not None
        if os.WIFSIGNALED(status):
            return None, os.WTERMSIG(status)
        return os.waitstatus_to_exitcode(status), None

    def _poll(
        self, pid: int, stopped_since: float | None, deadline: float | None
    ) -> tuple[int | None, float | None, float | None]:
        """Reap the child if it ended; track SIGSTOP/SIGCONT so paused time is not counted."""
        flags = os.WNOHANG | os.WUNTRACED | os.WCONTINUED
        while True:
            got, status = os.waitpid(pid, flags)
            if got == 0:
                return None, stopped_since, deadline
            if os.WIFSTOPPED(status):
                stopped_since = stopped_since or time.monotonic()
            elif os.WIFCONTINUED(status):
                if stopped_since is not None and deadline is not None:
                    deadline += time.monotonic() - stopped_since
                stopped_since = None
            else:
                return status, None, deadline

    def _signal_group(self, signum: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signum)

    def _finish(self, exit_code: int | None, killed_by: int | None, error: str | None) -> int:
        report = {
            "pid": os.getpid(),
            "exit_code": exit_code,
            "signal": killed_by,
            "timed_out": self.timed_out,
            "stop_signal": self.stop_signal,
            "started_at": self.started_at,
            "ended_at": time.time(),
            "spawn_error": error,
        }
        tmp = f"{self.opts.status}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(report, f)
        os.replace(tmp, self.opts.status)
        if error is not None:
            return 127
        return exit_code if exit_code is not None else 128 + (killed_by or 0)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """A handler, so that the signal reaches the wakeup fd (SIG_DFL for SIGCHLD would not)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="forge-shim", description=__doc__.split("\n")[0])
    parser.add_argument("--status", required=True, help="where to write the exit status (JSON)")
    parser.add_argument("--log", required=True, help="the attempt's log file (appended to)")
    parser.add_argument("--cwd", default=None, help="the child's working directory")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before stopping")
    parser.add_argument("--grace", type=float, default=5.0, help="SIGTERM to SIGKILL, seconds")
    parser.add_argument("--mask-env", action="append", default=[], help="mask this variable")
    parser.add_argument("--env-stdin", action="store_true", help="read the env JSON on stdin")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- the command to run")
    opts = parser.parse_args(argv)
    if opts.argv and opts.argv[0] == "--":
        opts.argv = opts.argv[1:]
    if not opts.argv:
        parser.error("no command given after --")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    env: dict[str, str] | None = None
    if opts.env_stdin:
        env = json.load(sys.stdin)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # the pipe from the daemon is done with: never hold it open
        os.close(devnull)
    return Shim(opts, env).run()


if __name__ == "__main__":
    sys.exit(main())
