"""`forge top`'s transcript screen: a task's latest attempt as `forge task logs -f` prints it.

A shell task's output is shown as written (secrets masked); a claude task's stream-json is
rendered by the same `TranscriptRenderer` as `forge task logs`. The file is followed while the
attempt runs, in a worker thread that stops when the screen closes.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from events.errors import ForgeError
from events.redact import redact
from events.state import TaskState
from forge.runtimes import iter_log_lines, status_path_for
from forge.runtimes.claude_transcript import TranscriptRenderer

__all__ = ["TranscriptScreen", "transcript_lines"]


def transcript_lines(path: str, task: TaskState, stop: threading.Event | None) -> list[str]:
    """The lines to show for one attempt's log (followed until `stop` when `stop` is given);
    used in batches by the screen, and whole by tests."""
    return list(_lines(path, task, stop))


def _lines(path: str, task: TaskState, stop: threading.Event | None) -> Iterator[str]:
    follow = stop is not None
    if task.definition.runtime != "claude":
        yield from iter_log_lines(path, follow=follow, stop=stop)
        return
    renderer = TranscriptRenderer()
    for line in iter_log_lines(path, follow=follow, stop=stop, redacted=False):
        yield from renderer.feed(line)
    if os.path.exists(status_path_for(path)):
        yield from renderer.finish()


class TranscriptScreen(Screen[None]):
    """One attempt's output, followed while it runs; Escape or q goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("q", "app.pop_screen", "back"),
    ]

    def __init__(self, task: TaskState, path: str) -> None:
        super().__init__()
        self.task_state = task
        self.path = path
        self._stop = threading.Event()
        self._pending: queue.SimpleQueue[str] = queue.SimpleQueue()

    def compose(self) -> ComposeResult:
        x = self.task_state
        yield Static(f"task {x.task_id} · attempt {x.attempt} · {redact(self.path)}", id="title")
        yield Log(id="transcript", highlight=False, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.1, self._show)
        self.run_worker(self._follow, thread=True, exclusive=True)

    def on_unmount(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        try:
            for line in _lines(self.path, self.task_state, self._stop):
                self._pending.put(line)
        except ForgeError as e:
            self._pending.put(f"cannot show the log: {redact(str(e))}")

    def _show(self) -> None:
        """Write what the worker read since the last tick, in one go."""
        lines: list[str] = []
        while True:
            try:
                lines.append(self._pending.get_nowait())
            except queue.Empty:
                break
        if lines:
            self.query_one(Log).write_lines(lines)
