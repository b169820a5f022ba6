"""A run that has already ended: what a runtime returns when there is nothing to run."""

from __future__ import annotations

import functools
import os

import psutil

from actors.runtime import FailureClass, Health, Outcome, ResourceUsage

__all__ = ["CompletedRun"]


@functools.cache
def _own_create_time() -> float:
    return psutil.Process().create_time()


class CompletedRun:
    """A `RunHandle` whose outcome is known from the start (no process of its own)."""

    def __init__(self, outcome: Outcome) -> None:
        self._outcome = outcome

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def create_time(self) -> float:
        return _own_create_time()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        return self._outcome

    def health(self) -> Health:
        return Health(alive=False)

    def resource_usage(self) -> ResourceUsage:
        return ResourceUsage()

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def terminate(self, grace: float = 5.0, failure: FailureClass = "cancelled") -> None:
        pass
