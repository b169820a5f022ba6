"""What every shim-based runtime shares: the runs it follows, finding and reading attempts."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator

from actors.runtime import TaskSpec
from forge.runtimes.logfile import iter_log_lines, status_path_for
from forge.runtimes.process import ProcessRun, find_shim

__all__ = ["ShimRuntime"]


class ShimRuntime:
    """Base of the runtimes whose attempts run under the shim (shell, claude)."""

    def __init__(self) -> None:
        self._runs: weakref.WeakSet[ProcessRun] = weakref.WeakSet()
        self._lock = threading.Lock()

    def locate(self, spec: TaskSpec) -> tuple[int, float] | None:
        """A live attempt of `spec` that no event names (see `find_shim`). Cheap when there is
        none: a shim's first act is to create its log file."""
        log = spec.log_path
        if not os.path.exists(log) and not os.path.exists(status_path_for(log)):
            return None
        return find_shim(log)

    def logs(self, log_path: str, follow: bool = False) -> Iterator[str]:
        return iter_log_lines(log_path, follow=follow)

    def cleanup(self) -> None:
        """Stop following every run; their processes are left alone (stop them first)."""
        with self._lock:
            runs = list(self._runs)
            self._runs.clear()
        for run in runs:
            run.detach()

    def _track(self, run: ProcessRun) -> None:
        with self._lock:
            self._runs.add(run)
