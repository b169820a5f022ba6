"""An attempt's processes die with it or are adopted, never both: a killed shim leaves nothing.

Each attempt here starts the processes an agent may leave behind: a background job in its
process group, one that moved to a session of its own (still a child of the command) and one
that daemonized (double fork + setsid: reparented away from the command).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator

import psutil
import pytest

from forge.runtimes import ProcessRun
from forge.runtimes.logfile import record_path_for
from tests.runtimes.conftest import WAIT, Collector, Harness, wait_until

pytestmark = pytest.mark.usefixtures("shim")  # the contract: both shims pass it

_OWN_SESSION = "import os; os.setsid(); os.execvp('sleep', ['sleep', '30'])"
_DAEMONIZE = (
    "import os\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        print(f'daemon={os.getpid()}', flush=True)\n"
    "        os.execvp('sleep', ['sleep', '30'])\n"
    "    os._exit(0)\n"
    "os.wait()\n"
)
# the command, a background job, a process in its own session and a daemonized one
SCRIPT = (
    "echo main=$$; sleep 30 & echo bg=$!; "
    f'"$PY" -I -c "{_OWN_SESSION}" & echo own=$!; '
    f'"$PY" -I -c "{_DAEMONIZE}"; '
    "sleep 30 & echo fg=$!; echo ready; wait"
)
NAMES = ("main", "bg", "own", "daemon", "fg")
# the same, from a command that first moves to a session of its own (out of the shim's)
# (a group leader cannot call setsid: it first joins the shim's group); only the shim's record
# of its children finds such a command once the shim is dead
LEAVE_SESSION = (
    "import os, sys; os.setpgid(0, os.getppid()); os.setsid(); "
    "os.execvp('sh', ['sh', '-c', sys.argv[1]])"
)


@pytest.fixture
def strays() -> Iterator[list[psutil.Process]]:
    """Processes a test saw; whatever survives a failed test is killed at teardown."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the create time: never another process


def _start(
    harness: Harness, sink: Collector, strays: list[psutil.Process], own_session: bool = False
) -> ProcessRun:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PY": sys.executable}
    command = ["sh", "-c", SCRIPT]
    if own_session:
        command = [sys.executable, "-I", "-c", LEAVE_SESSION, SCRIPT]
    handle = harness.run(harness.spec(*command, env=env), sink)
    assert isinstance(handle, ProcessRun)
    sink.wait_for_line(lambda line: line == "ready")
    strays.extend(psutil.Process(_pid_of(sink, name)) for name in NAMES)
    return handle


def _pid_of(sink: Collector, name: str) -> int:
    prefix = f"{name}="
    return int(sink.wait_for_line(lambda text: text.startswith(prefix)).removeprefix(prefix))


def _recorded(handle: ProcessRun) -> set[int]:
    try:
        with open(record_path_for(handle.log_path), encoding="utf-8") as f:
            return {pid for pid, _ticks in json.load(f)}
    except (OSError, ValueError):
        return set()


def _survivors(procs: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_a_daemonized_process_stays_in_the_attempts_tree(
    harness: Harness, sink: Collector, strays: list[psutil.Process]
) -> None:
    handle = _start(harness, sink, strays)
    main, _bg, _own, daemon, _fg = strays

    assert daemon.ppid() == main.pid  # the command is its subreaper: not reparented to init
    wait_until(lambda: _recorded(handle) == {main.pid})  # the shim lists its own children


@pytest.mark.parametrize("own_session", [False, True], ids=["shim-session", "own-session"])
def test_kill_9_of_the_shim_kills_every_process_of_the_attempt_before_it_ends(
    harness: Harness, sink: Collector, strays: list[psutil.Process], own_session: bool
) -> None:
    handle = _start(harness, sink, strays, own_session)
    wait_until(lambda: strays[0].pid in _recorded(handle))

    os.kill(handle.pid, signal.SIGKILL)
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert not outcome.ok
    assert outcome.failure == "crash"
    assert _survivors(strays) == []  # already when the end is known: a retry runs alone


def test_a_restarted_daemon_kills_what_a_killed_shim_left_instead_of_adopting_it(
    harness: Harness, sink: Collector, strays: list[psutil.Process]
) -> None:
    handle = _start(harness, sink, strays)
    pid, create_time = handle.pid, handle.create_time
    handle.detach()  # the daemon died
    os.kill(pid, signal.SIGKILL)  # then the shim
    wait_until(lambda: not _shim_alive(pid, create_time))

    spec = harness.spec(command=["true"], log_path=handle.log_path)
    assert harness.runtime.adopt(spec, pid, create_time, Collector()) is None
    assert _survivors(strays) == []  # the attempt is recorded lost: nothing of it runs on


def test_a_command_stops_with_its_shim_while_nobody_watches(
    harness: Harness, sink: Collector, strays: list[psutil.Process]
) -> None:
    """The daemon is down (or cut off from the log) when the shim is killed: the command must
    not run on to its end unseen, or the retry of the attempt runs it a second time. It stops,
    still the parent of what it started, and the daemon's return kills the whole tree."""
    handle = _start(harness, sink, strays)
    main = strays[0]
    handle.detach()  # nobody follows the attempt
    os.kill(handle.pid, signal.SIGKILL)

    wait_until(lambda: main.status() == psutil.STATUS_STOPPED)  # without a daemon
    assert strays[3].ppid() == main.pid  # its tree held together

    spec = harness.spec(command=["true"], log_path=handle.log_path)
    assert harness.runtime.adopt(spec, handle.pid, handle.create_time, Collector()) is None
    assert _survivors(strays) == []


def test_terminate_kills_the_tree_of_an_attempt_whose_shim_is_gone(
    harness: Harness, sink: Collector, strays: list[psutil.Process]
) -> None:
    handle = _start(harness, sink, strays)
    handle.detach()
    os.kill(handle.pid, signal.SIGKILL)
    wait_until(lambda: not _shim_alive(handle.pid, handle.create_time))

    handle.terminate(grace=0)  # as `forge daemon stop --force` does

    assert _survivors(strays) == []


def test_an_attempt_that_ends_takes_its_daemonized_processes_with_it(
    harness: Harness, sink: Collector, strays: list[psutil.Process]
) -> None:
    handle = _start(harness, sink, strays)
    main = strays[0]
    main.kill()  # kill -9 of the command, the shim alive: the ordinary crash
    outcome = handle.wait(WAIT)

    assert outcome is not None
    assert outcome.failure == "crash"
    assert outcome.signal == signal.SIGKILL
    assert _survivors(strays) == []  # the shim kills them before it reports


def _shim_alive(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        same = abs(proc.create_time() - create_time) < 0.01
        return same and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
