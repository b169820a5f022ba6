"""Fixtures for the runtime tests: a shell runtime whose every process is killed at teardown, and
the `shim` fixture that runs a test once under each shim (the C one and the Python one)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from actors.runtime import Notice, OutputLine, RunHandle, TaskSpec
from events.redact import forget_secrets
from forge.runtimes import ProcessRun, ShellRuntime, native_shim, shim_launch

BASE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
WAIT = 10.0  # seconds: generous upper bound for anything the tests wait for


class Collector:
    """A sink that remembers notices and lets a test wait for one."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self._cond = threading.Condition()

    def __call__(self, notice: Notice) -> None:
        with self._cond:
            self.notices.append(notice)
            self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return [n.text for n in self.notices if isinstance(n, OutputLine)]

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = WAIT) -> str:
        with self._cond:
            found: list[str] = []

            def seen() -> bool:
                found[:] = [t for t in self.lines() if predicate(t)]
                return bool(found)

            if not self._cond.wait_for(seen, timeout):
                raise AssertionError(f"no matching line within {timeout}s: {self.lines()}")
            return found[0]


def wait_until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition that no notice announces (a process state) until it holds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Harness:
    """Starts attempts through a ShellRuntime and remembers them for the teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.runtime = ShellRuntime(kill_grace=0.5)
        self.handles: list[RunHandle] = []
        self._count = 0

    def spec(self, *command: str, **fields: object) -> TaskSpec:
        self._count += 1
        defaults: dict[str, object] = {
            "task_id": f"t{self._count}",
            "attempt": 1,
            "log_path": str(self.tmp / f"t{self._count}.log"),
            "command": list(command),
            "env": dict(BASE_ENV),
        }
        defaults.update(fields)
        return TaskSpec(**defaults)  # type: ignore[arg-type]

    def run(self, spec: TaskSpec, sink: Collector | None = None) -> RunHandle:
        handle = self.runtime.execute(spec, sink if sink is not None else Collector())
        self.handles.append(handle)
        return handle

    def keep(self, handle: RunHandle | None) -> RunHandle | None:
        if handle is not None:
            self.handles.append(handle)
        return handle

    def close(self) -> None:
        for handle in self.handles:
            handle.terminate(grace=0)
        for handle in self.handles:
            if isinstance(handle, ProcessRun) and handle.wait(WAIT) is None:
                handle.detach()
        self.runtime.cleanup()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()
    forget_secrets()


@pytest.fixture
def sink() -> Collector:
    return Collector()


@pytest.fixture(scope="session")
def c_shim(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The C shim, built once for the session in a directory of its own."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the C shim with")
    return [str(native_shim.build(tmp_path_factory.mktemp("bin")))]


@pytest.fixture(params=["python", "c"])
def shim(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The shim command every attempt of the test runs under: the contract suite asks for this
    fixture, so that each of its tests runs against both implementations."""
    if request.param == "python":
        command = native_shim.python_command()
    else:
        command = request.getfixturevalue("c_shim")
    monkeypatch.setattr(shim_launch, "shim_command", lambda: list(command))
    return list(command)
