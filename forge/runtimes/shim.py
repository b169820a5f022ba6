"""The shim every attempt runs under: a tiny supervisor that outlives the daemon.

    python -I -S forge/runtimes/shim.py --status STATUS --log LOG [--record FILE]
        [--exit-record FILE] [--cwd DIR] [--timeout S] [--grace S] [--mask-env NAME ...]
        [--env-stdin] -- argv...

(`python -m forge.runtimes.shim ...` works too.) The daemon starts the shim in a new session,
so that killing the daemon, even with SIGKILL, neither kills nor SIGPIPEs the agent. The shim:

* reads the child's environment as a JSON object from stdin when `--env-stdin` is given (so the
  child gets exactly that mapping: the shim's own interpreter adds variables such as
  `LC_CTYPE` to its environment, and secrets stay out of the shim's command line), then runs
  `argv` in its own process group with stdin from /dev/null;
* copies the child's stdout and stderr, merged, to LOG (appending), masking the values of the
  `--mask-env` variables and every secret *shape* (the patterns of `events.redact`; see
  `forge.runtimes.shim_masking`) so that those secrets never reach the disk;
* makes itself and the child child subreapers (Linux; the flag survives the child's exec): a
  process of the attempt that daemonizes (double fork, setsid) is reparented to the command, or
  to the shim once the command has ended, never to init, so it stays in the attempt's tree;
  the shim writes its direct children, as JSON pairs of PID and start time in clock ticks, to
  `--record` whenever they change, so that the daemon can kill every process of the attempt
  should the shim itself be killed. The command stops when the shim dies (a parent-death
  SIGSTOP): killed while nobody watched (the daemon down or cut off from the log), it would
  otherwise run on to its end unseen, and the retry of its attempt run it a second time;
  stopped, not killed, it stays the parent of what it started, and the daemon kills the whole
  tree;
* stops the child's process group after `--timeout` seconds (SIGTERM, then SIGKILL after
  `--grace`); time the child spends stopped (SIGSTOP) does not count;
* forwards SIGTERM, SIGINT and SIGHUP it receives to the child's process group;
* the moment it reaps the child, writes the exit record (`--exit-record FILE`) atomically
  (temporary file, then rename): the same JSON as STATUS below, `ended_at` the time of the
  reap and `spawn_error` null. Should the shim be killed during what follows (up to a few
  seconds), the runtime learns from it how the command ended instead of losing its status;
* then kills what is left of the child's process group and every process reparented to it
  (background and daemonized processes must not outlive their attempt), drains the output,
  and writes STATUS atomically (temporary file, then rename) as JSON: pid, exit_code, signal,
  timed_out, stop_signal, started_at, ended_at, spawn_error. STATUS is the authority: once it
  is written, the exit record is removed.

Test hook: with FORGE_SHIM_TEST_HOLD_AFTER_EXIT=S in the shim's *own* environment (the daemon
starts it with an empty one; the command's mapping comes over stdin and is not looked at), the
shim sleeps S seconds right after writing the exit record, so that a test can kill it in that
window deterministically (tests/runtimes/test_exit_record.py).

Only the standard library is used: the shim starts with `-I -S` (no site-packages) to start
fast and to ignore any PYTHON* variable of the agent's environment.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import os
import select
import signal
import subprocess
import sys
import time
from types import FrameType

if __package__:  # imported, or run with `-m forge.runtimes.shim`
    from forge.runtimes.shim_masking import Masker, ShapeMasker
else:  # run by path: -I leaves this directory off sys.path (appended: the stdlib comes first)
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    from shim_masking import Masker, ShapeMasker  # type: ignore[import-not-found,no-redef]

_CHUNK = 1 << 16
_TICK = 0.1  # seconds between checks of the child's state while it is quiet
_DRAIN_AFTER_EXIT = 1.0  # how long to wait for the pipe's end once the group is killed
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_CLEANUP_TIMEOUT = 5.0  # how long to keep killing what is left once the child has ended
_PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
_PR_SET_PDEATHSIG = 1
_TEST_HOLD = "FORGE_SHIM_TEST_HOLD_AFTER_EXIT"  # tests only: seconds to sleep after the record

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


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
        self.shapes = ShapeMasker()
        self.recorded: list[list[int]] | None = None

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = signum
        if self.child is not None:
            self._signal_group(signum)

    def run(self) -> int:
        _become_subreaper()
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
        self._record_children()
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
            preexec_fn=functools.partial(_child_setup, os.getpid()),  # noqa: PLW1509 - no threads
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
                    _write_all(log, self.shapes.feed(self.masker.feed(data)))
                else:
                    pipe = None  # closed by every writer; keep supervising the child
            now = time.monotonic()
            if ready and now - last_check < _TICK:
                continue  # busy output: check the child's state once per tick only
            last_check = now
            if status is None:
                status, stopped_since, deadline = self._poll(child.pid, stopped_since, deadline)
                if status is not None:
                    child.returncode = 0  # reaped here; keeps Popen from waiting again
                    self._write_exit_record(*_ending(status))
                    # the child is gone: its background and daemonized processes go with it
                    self._kill_leftovers()
                    drain_until = time.monotonic() + _DRAIN_AFTER_EXIT
                    continue
                self._record_children()
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
        _write_all(log, self.shapes.feed(self.masker.flush()) + self.shapes.flush())
        assert status is not None
        return _ending(status)

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

    def _record_children(self) -> None:
        """Reap ended orphans; write the shim's children (PID, start ticks) when they change."""
        children: list[list[int]] = []
        for pid in _children(os.getpid()):
            fields = _stat(pid)
            if fields is None:
                continue
            if fields[0] == b"Z" and self.child is not None and pid != self.child.pid:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # a daemonized process that ended
                continue
            children.append([pid, int(fields[19])])
        children.sort()
        if self.opts.record is None or children == self.recorded:
            return
        tmp = f"{self.opts.record}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(children, f)
        os.replace(tmp, self.opts.record)
        self.recorded = children

    def _kill_leftovers(self) -> None:
        """SIGKILL the child's group and every process reparented to the shim, until none is
        left (killing one reparents its own children to the shim: the next round gets them)."""
        deadline = time.monotonic() + _CLEANUP_TIMEOUT
        own_group = os.getpgrp()
        while True:
            self._signal_group(signal.SIGKILL)
            children = _children(os.getpid())
            if not children or time.monotonic() >= deadline:
                return
            for pid in children:
                with contextlib.suppress(OSError):
                    group = os.getpgid(pid)
                    if group != own_group:
                        os.killpg(group, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            reaped = False
            with contextlib.suppress(ChildProcessError):
                while os.waitpid(-1, os.WNOHANG)[0] != 0:
                    reaped = True
            if not reaped:  # wait for the next SIGCHLD (or a tick)
                select.select([self.wakeup], [], [], _TICK)
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 512)

    def _signal_group(self, signum: int) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signum)

    def _report(self, exit_code: int | None, killed_by: int | None, error: str | None) -> str:
        """The JSON of the status file (and of the exit record), ended now."""
        return json.dumps(
            {
                "pid": os.getpid(),
                "exit_code": exit_code,
                "signal": killed_by,
                "timed_out": self.timed_out,
                "stop_signal": self.stop_signal,
                "started_at": self.started_at,
                "ended_at": time.time(),
                "spawn_error": error,
            }
        )

    def _write_exit_record(self, exit_code: int | None, killed_by: int | None) -> None:
        """How the child ended, on disk before anything else happens (see the docstring)."""
        if self.opts.exit_record is None:
            return
        try:
            _replace_file(self.opts.exit_record, self._report(exit_code, killed_by, None))
        except OSError as e:  # the status follows: this record only narrows a window
            print(f"forge-shim: cannot write {self.opts.exit_record}: {e}", file=sys.stderr)
        with contextlib.suppress(ValueError):  # as the C shim, which reads a bad value as 0
            time.sleep(float(os.environ.get(_TEST_HOLD) or 0))

    def _finish(self, exit_code: int | None, killed_by: int | None, error: str | None) -> int:
        _replace_file(self.opts.status, self._report(exit_code, killed_by, error))
        for done in (self.opts.record, self.opts.exit_record):  # the status says it all now
            if done is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(done)
        if error is not None:
            return 127
        return exit_code if exit_code is not None else 128 + (killed_by or 0)


def _ending(status: int) -> tuple[int | None, int | None]:
    """(exit code, killing signal) of a wait status: one of the two is None."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status), None


def _replace_file(path: str, text: str) -> None:
    """Write `path` atomically (0600): a reader sees the old file or the whole new one."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _child_setup(shim: int) -> None:
    """In the command's process before its exec: a subreaper, stopped if the shim dies."""
    _become_subreaper()
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGSTOP, 0, 0, 0)
    if os.getppid() != shim:  # the shim died before the signal was armed
        os.kill(os.getpid(), signal.SIGSTOP)


def _become_subreaper() -> None:
    """Have orphaned descendants reparented to this process rather than to init (Linux)."""
    if _LIBC is not None:
        with contextlib.suppress(AttributeError):
            _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat from the state on (state, ppid, ..., [19] start ticks)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def _children(pid: int) -> list[int]:
    """The PIDs of the children of the (single-threaded) process `pid`."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(child) for child in f.read().split()]
    except FileNotFoundError:  # a kernel without CONFIG_PROC_CHILDREN: scan every process
        pass
    except OSError:
        return []
    children = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (fields := _stat(int(entry))) and int(fields[1]) == pid:
                children.append(int(entry))
    return children


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
    parser.add_argument("--record", default=None, help="where to list the shim's children")
    parser.add_argument(
        "--exit-record", default=None, help="where to write the exit status once reaped (JSON)"
    )
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
