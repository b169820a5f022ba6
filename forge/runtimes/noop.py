"""A runtime that does nothing, instantly: it measures the orchestrator, not the agents."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from actors.runtime import Notice, Outcome, RunHandle, TaskSpec
from forge.runtimes.completed import CompletedRun
from forge.runtimes.logfile import iter_log_lines

__all__ = ["NoopRuntime"]

_OK = Outcome(ok=True, exit_code=0)


class NoopRuntime:
    """Every attempt succeeds at once, in-process: no process, no log file, no notice."""

    name = "noop"

    def execute(self, spec: TaskSpec, sink: Callable[[Notice], None]) -> RunHandle:
        return CompletedRun(_OK)

    def adopt(
        self, spec: TaskSpec, pid: int, create_time: float, sink: Callable[[Notice], None]
    ) -> RunHandle | None:
        """Nothing outlives a no-op attempt: there is never anything to adopt."""
        return None

    def locate(self, spec: TaskSpec) -> tuple[int, float] | None:
        return None

    def logs(self, log_path: str, follow: bool = False) -> Iterator[str]:
        """No-op attempts write no log; an existing file at `log_path` is read all the same."""
        if not os.path.exists(log_path):
            return iter(())
        return iter_log_lines(log_path, follow=False)

    def cleanup(self) -> None:
        pass
