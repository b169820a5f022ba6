"""An in-process runtime for scheduler tests: each attempt's fate is scripted by its command.

`command[attempt - 1]` names how attempt `attempt` ends ("ok", "exit", "crash", "api",
"hold"); attempts past the end of the script succeed. "hold" attempts end only when the test
releases them, so a test can fill the agents and then watch what is assigned next.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

from actors.runtime import (
    FailureClass,
    Health,
    Notice,
    Outcome,
    ResourceUsage,
    RunHandle,
    TaskSpec,
)

FATES: dict[str, Outcome] = {
    "ok": Outcome(ok=True, exit_code=0),
    "exit": Outcome(ok=False, failure="exit", exit_code=1, reason="exited with code 1"),
    "crash": Outcome(ok=False, failure="crash", reason="killed by SIGKILL"),
    "api": Outcome(ok=False, failure="api_error", reason="HTTP 529 overloaded"),
}


class FakeRun:
    _pids = itertools.count(10_000_000)

    def __init__(self, outcome: Outcome | None) -> None:
        self._pid = next(self._pids)
        self._create_time = time.time()
        self._outcome = outcome
        self._done = threading.Event()
        if outcome is not None:
            self._done.set()

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def create_time(self) -> float:
        return self._create_time

    def release(self, outcome: Outcome) -> None:
        if not self._done.is_set():
            self._outcome = outcome
            self._done.set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self._outcome

    def health(self) -> Health:
        return Health(alive=not self._done.is_set())

    def resource_usage(self) -> ResourceUsage:
        return ResourceUsage()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None:
        self.release(Outcome(ok=False, failure=failure, reason=f"stopped ({failure})"))


class FakeRuntime:
    name = "fake"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[str, int]] = []  # (task id, attempt) in start order
        self.held: dict[tuple[str, int], FakeRun] = {}
        self.changed = threading.Condition(self.lock)

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        script = spec.command or []
        fate = script[spec.attempt - 1] if spec.attempt <= len(script) else "ok"
        run = FakeRun(None if fate == "hold" else FATES[fate])
        with self.changed:
            self.started.append((spec.task_id, spec.attempt))
            if fate == "hold":
                self.held[(spec.task_id, spec.attempt)] = run
            self.changed.notify_all()
        return run

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        return None

    def locate(self, spec: TaskSpec) -> tuple[int, float] | None:
        return None

    def logs(self, log_path: str, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cleanup(self) -> None:
        with self.lock:
            runs = list(self.held.values())
        for run in runs:
            run.release(Outcome(ok=False, failure="lost", reason="test over"))

    def wait_started(self, count: int, timeout: float = 10.0) -> list[tuple[str, int]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.started) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.started)} of {count} attempts started")
                self.changed.wait(left)
            return list(self.started)

    def release(self, task_id: str, attempt: int, fate: str = "ok") -> None:
        with self.lock:
            run = self.held[(task_id, attempt)]
        run.release(FATES[fate])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
