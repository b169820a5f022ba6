"""What the isolation tests share: the skips that say what a test needs (root, bubblewrap,
cgroups), a shell runtime that hides a FORGE_HOME of the test's own, and running one attempt to
its end. Every test here uses the real bwrap and the real cgroups of the machine (CI: root)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from actors.runtime import Outcome, TaskSpec
from forge.runtimes.cgroups import detect
from forge.runtimes.shell import ShellRuntime
from tests.runtimes.conftest import Collector

WAIT = 60.0

IS_ROOT = os.geteuid() == 0
BWRAP = shutil.which("bwrap")

needs_bwrap = pytest.mark.skipif(
    not IS_ROOT or BWRAP is None,
    reason="needs root and bubblewrap (apt-get install bubblewrap; CI runs as root)",
)
needs_cgroups = pytest.mark.skipif(
    not IS_ROOT or detect().mode == "rlimit",
    reason="needs root and cgroups with the memory, cpu and pids controllers (CI runs as root)",
)


class Home:
    """A FORGE_HOME of the test's own: logs under it, hidden from sandboxed commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "forge-home"
        (self.home / "logs").mkdir(parents=True)
        self.runtime = ShellRuntime(hidden=[str(self.home)], kill_grace=1.0)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "user")}
        (root / "user").mkdir()
        self._count = 0

    def spec(self, command: list[str], cwd: Path, **fields: object) -> TaskSpec:
        self._count += 1
        task_id = f"iso{self._count}"
        log = self.home / "logs" / task_id / "attempt-1.log"
        return TaskSpec(
            task_id=task_id,
            attempt=1,
            log_path=str(log),
            command=command,
            cwd=str(cwd),
            env=dict(self.env),
            timeout=WAIT,
            **fields,  # type: ignore[arg-type]
        )

    def run(self, spec: TaskSpec) -> tuple[Outcome, list[str]]:
        """Run one attempt to its end: its outcome and its output lines."""
        sink = Collector()
        handle = self.runtime.execute(spec, sink)
        outcome = handle.wait(WAIT)
        assert outcome is not None, "the attempt did not end"
        return outcome, sink.lines()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path)
    yield h
    h.runtime.cleanup()


def descendants_of_session(sid: int) -> list[psutil.Process]:
    """Live processes of a session (an attempt's shim leads one)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def wait_until_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The PIDs still alive after `timeout` (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    left = pids
    while left and time.monotonic() < deadline:
        left = [p for p in left if psutil.pid_exists(p) and _not_zombie(p)]
        time.sleep(0.02)
    return left


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
