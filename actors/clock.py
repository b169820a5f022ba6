"""Where actors read the time: wall-clock seconds, recorded in every event they append."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()
