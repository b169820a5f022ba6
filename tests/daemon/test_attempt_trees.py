"""Through a real daemon: an attempt's processes die with it, so a retry never runs beside them
and `forge daemon stop --force` leaves none behind, daemonized ones included."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.daemon.conftest import DaemonHarness

# Run as `python helper.py DIR`: note whether the previous attempt's daemonized process is still
# alive (it must not be), then daemonize a new one (double fork + setsid) that records its PID.
HELPER = """
import os, sys
folder = sys.argv[1]
pidfile = os.path.join(folder, "daemon.pid")

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False

if os.path.exists(pidfile) and alive(int(open(pidfile).read())):
    open(os.path.join(folder, "overlap"), "a").write("overlap\\n")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(pidfile + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(pidfile + ".tmp", pidfile)
        os.execvp("sleep", ["sleep", "60"])
    os._exit(0)
os.wait()
"""


@pytest.fixture
def seen() -> Iterator[list[psutil.Process]]:
    """The daemonized processes a test saw: killed at teardown should the test have failed."""
    procs: list[psutil.Process] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # psutil checks the create time: never another process


def _daemonized(folder: Path, seen: list[psutil.Process]) -> psutil.Process | None:
    try:
        proc = psutil.Process(int((folder / "daemon.pid").read_text()))
    except (OSError, ValueError, psutil.Error):
        return None
    if all(proc.pid != p.pid for p in seen):
        seen.append(proc)
    return proc


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_killed_shim_is_retried_alone_and_a_forced_stop_leaves_no_process(
    harness: DaemonHarness, tmp_path: Path, seen: list[psutil.Process]
) -> None:
    h = harness
    helper = tmp_path / "helper.py"
    helper.write_text(HELPER)
    runs = tmp_path / "runs"
    command = f"sh -c 'echo run >> {runs}; {sys.executable} -I {helper} {tmp_path}; sleep 60'"
    h.foreground()
    h.wait_for("the daemon", lambda: h.files.read() is not None)
    task_id = h.forge("task", "submit", "-c", command).stdout.strip()
    first = h.wait_for("attempt 1's daemonized process", lambda: _daemonized(tmp_path, seen))
    shim = h.wait_for("the recorded start", lambda: h.state().tasks[task_id].pid)

    psutil.Process(shim).send_signal(signal.SIGKILL)

    second = h.wait_for(
        "the retry's daemonized process",
        lambda: (p := _daemonized(tmp_path, seen)) is not None and p.pid != first.pid and p,
    )
    assert runs.read_text() == "run\nrun\n"
    assert not (tmp_path / "overlap").exists()  # nothing of attempt 1 ran beside attempt 2
    assert not _alive(first)

    assert h.forge("daemon", "stop", "--force").returncode == 0
    assert not _alive(second)
    assert h.live_agents() == []
