"""The orchestrator's mailbox: pykka's FIFO queue, from which its owner can also take the run
of messages waiting at its head, so that it handles several in one go (one append for all of
them) in the order they came."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

__all__ = ["Inbox"]


class Inbox(queue.Queue[Any]):
    def take_while(self, wanted: Callable[[Any], bool], most: int) -> list[Any]:
        """Remove and return the messages at the head of the queue, in order, while each is
        `wanted` and only told (nobody waits for an answer), at most `most` of them."""
        taken: list[Any] = []
        with self.mutex:
            waiting = self.queue
            while waiting and len(taken) < most:
                envelope = waiting[0]
                if envelope.reply_to is not None or not wanted(envelope.message):
                    break
                taken.append(waiting.popleft().message)
        return taken

    def waiting(self, wanted: Callable[[Any], bool]) -> bool:
        """The message at the head of the queue is `wanted` (and only told)."""
        with self.mutex:
            return bool(self.queue) and (
                self.queue[0].reply_to is None and wanted(self.queue[0].message)
            )
