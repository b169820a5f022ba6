"""`forge top`'s Textual application: the fleet live, and keys that act on it.

It is a reader of the log. It starts from a replay (snapshot + tail), then a `LogFollower`
thread blocks in XREAD and the view folds what arrives with the pure projection, at most ten
redraws a second, touching only the rows that changed. It never asks the daemon anything, so it
shows the same fleet whether a daemon runs or not. Keys append the same requests as the CLI,
through the CLI's own functions (`forge task cancel|retry`, `forge agent pause|resume`,
`forge approve|deny`), in a worker thread so the view never waits on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
from textual.app import App as TextualApp
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from events import types as t
from events.errors import ForgeError
from events.redact import redact
from events.replay import replay
from events.state import TaskState
from forge.cli.agent_cmd import request_agent
from forge.cli.app import App
from forge.cli.approvals_cmd import answer, waiting_approvals
from forge.cli.task_cmd import request_cancel, request_retry
from forge.cli.task_logs import log_path
from forge.cli.top import widgets as w
from forge.cli.top.follow import LogFollower
from forge.cli.top.model import TopModel
from forge.cli.top.transcript import TranscriptScreen

__all__ = ["TopApp"]

REDRAW_S = 0.1  # redraws are coalesced to ten a second
QUEUE_ROWS = 200  # the head of the queue that is shown; the rest is counted per priority

CSS = """
#summary { height: auto; padding: 0 1; }
#status { height: 1; padding: 0 1; color: $text-muted; }
KeyedTable { border: round $primary-darken-2; height: 1fr; }
KeyedTable:focus { border: round $accent; }
#upper { height: 1fr; }
#agents { width: 3fr; }
#side { width: 2fr; }
#lower { height: 1fr; }
"""


class TopApp(TextualApp[None]):
    """The live view of one namespace's log."""

    CSS = CSS
    TITLE = "forge top"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("l", "logs", "transcript"),
        Binding("c", "cancel", "cancel task"),
        Binding("r", "retry", "retry task"),
        Binding("p", "pause", "pause/resume agent"),
        Binding("a", "approve", "approve"),
        Binding("d", "deny", "deny"),
    ]

    def __init__(self, cli: App) -> None:
        super().__init__()
        self.cli = cli
        state, _ = replay(cli.store)
        self.model = TopModel(state)
        self.follower = LogFollower(cli.store, state.position)
        self._rss: dict[str, int] = {}
        self.redraws = 0

    # -- layout ------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        with Horizontal(id="upper"):
            yield w.KeyedTable(w.AGENT_COLUMNS, id="agents")
            with Vertical(id="side"):
                yield w.KeyedTable(w.APPROVAL_COLUMNS, id="approvals")
                yield w.KeyedTable(w.BREAKER_COLUMNS, id="breakers")
        yield w.KeyedTable(w.RUNNING_COLUMNS, id="running")
        with Horizontal(id="lower"):
            yield w.KeyedTable(w.QUEUE_COLUMNS, id="queue")
            yield w.KeyedTable(w.FINISHED_COLUMNS, id="finished")
        yield Static(id="status")
        yield Footer()

    def table(self, name: str) -> w.KeyedTable:
        return self.query_one(f"#{name}", w.KeyedTable)

    def on_mount(self) -> None:
        self.sub_title = self.cli.settings.redis.namespace
        for name in ("agents", "approvals", "breakers", "running", "queue", "finished"):
            self.table(name).border_title = name
        self._draw_all()
        self.follower.start()
        self.set_interval(REDRAW_S, self.flush)
        self.set_interval(1.0, self._tick)
        self.table("running").focus()

    def on_unmount(self) -> None:
        self.follower.stop()

    # -- drawing -----------------------------------------------------------------------

    def _draw_all(self) -> None:
        now = time.time()
        state = self.model.state
        for agent_id in state.agents:
            self._draw_agent(agent_id, now)
        for task in self.model.running():
            self.table("running").put(task.task_id, w.running_row(task, now))
        self._draw_queue(now, set())
        self._draw_finished(set())
        self._draw_approvals(now)
        for breaker in state.breakers.values():
            self.table("breakers").put(breaker.name, w.breaker_row(breaker))
        self._draw_summary(now)

    def flush(self) -> None:
        """Fold what the follower read and redraw what it changed."""
        self.model.apply(self.follower.drain())
        changes = self.model.take_changes()
        now = time.time()
        if changes:
            self.redraws += 1
            state = self.model.state
            running = self.table("running")
            for task_id in changes.tasks:
                if task_id in self.model.active:
                    running.put(task_id, w.running_row(state.tasks[task_id], now))
                else:
                    running.drop(task_id)
            for agent_id in changes.agents:
                self._draw_agent(agent_id, now)
            if changes.tasks:
                self._draw_queue(now, changes.tasks)
                self._draw_finished(changes.tasks)
            if changes.approvals:
                self._draw_approvals(now)
            if changes.breakers:
                for breaker in state.breakers.values():
                    self.table("breakers").put(breaker.name, w.breaker_row(breaker))
        if changes or self.follower.error:
            self._draw_summary(now)

    def _draw_summary(self, now: float) -> None:
        self.query_one("#summary", Static).update(w.summary(self.model, now, self.follower.error))

    def _draw_agent(self, agent_id: str, now: float) -> None:
        agent = self.model.state.agents.get(agent_id)
        table = self.table("agents")
        if agent is None or agent.status == "terminated":
            table.drop(agent_id)
        else:
            table.put(agent_id, w.agent_row(agent, self.model, now, self._rss.get(agent_id)))

    def _draw_queue(self, now: float, changed: set[str]) -> None:
        table = self.table("queue")
        head = self.model.queue_head(QUEUE_ROWS)
        table.keep_only(head)
        tasks = self.model.state.tasks
        for task_id in head:
            if task_id not in table or task_id in changed:
                table.put(task_id, w.queue_row(tasks[task_id], now))
        table.order_by(head)

    def _draw_finished(self, changed: set[str]) -> None:
        table = self.table("finished")
        newest = list(self.model.finished)
        table.keep_only(newest)
        for task_id in newest:
            task = self.model.task(task_id)
            if task is not None and (task_id not in table or task_id in changed):
                table.put(task_id, w.finished_row(task))
        table.order_by(newest)

    def _draw_approvals(self, now: float) -> None:
        table = self.table("approvals")
        waiting = waiting_approvals(self.model.state)
        table.keep_only(a.approval_id for a in waiting)
        for a in waiting:
            table.put(a.approval_id, w.approval_row(a, now))

    def _tick(self) -> None:
        """Once a second: elapsed times, memory of running attempts, expiries."""
        now = time.time()
        state = self.model.state
        self._rss = {
            x.agent_id: rss
            for x in self.model.running()
            if x.agent_id and (rss := _rss_of(x)) is not None
        }
        for task in self.model.running():
            self.table("running").put(task.task_id, w.running_row(task, now))
        for agent_id in state.agents:
            self._draw_agent(agent_id, now)
        self._draw_approvals(now)
        self._draw_summary(now)

    # -- keys --------------------------------------------------------------------------

    def _focused_task(self) -> str | None:
        """The task of the row under the cursor of the focused table (the running table's if
        no table has the focus)."""
        focused = self.focused
        table = focused if isinstance(focused, w.KeyedTable) else self.table("running")
        key = table.selected()
        if key is None:
            return None
        state = self.model.state
        if table.id == "agents":
            agent = state.agents.get(key)
            return agent.task_id if agent is not None else None
        if table.id == "approvals":
            approval = state.approvals.get(key)
            return approval.task_id if approval is not None else None
        return key if table.id in ("running", "queue", "finished") else None

    def _focused_agent(self) -> str | None:
        focused = self.focused
        if focused is self.table("running"):
            task_id = self.table("running").selected()
            task = self.model.state.tasks.get(task_id) if task_id else None
            return task.agent_id if task is not None else None
        return self.table("agents").selected()

    def _act(self, request: Callable[[], str]) -> None:
        """Run a CLI request in a worker thread and say how it went."""

        def work() -> None:
            try:
                said, error = request(), False
            except ForgeError as e:
                said, error = redact(str(e)), True
            self.call_from_thread(self.say, said, error)

        self.run_worker(work, thread=True, group="requests")

    def say(self, message: str, error: bool = False) -> None:
        self.query_one("#status", Static).update(w.one_line(message, 200))
        self.notify(w.one_line(message, 200), severity="error" if error else "information")

    def _task_or_say(self) -> TaskState | None:
        task_id = self._focused_task()
        task = self.model.task(task_id) if task_id is not None else None
        if task is None:
            self.say("no task selected", error=True)
        return task

    def action_cancel(self) -> None:
        if (task := self._task_or_say()) is not None:
            task_id = task.task_id
            self._act(lambda: request_cancel(self.cli, task_id))

    def action_retry(self) -> None:
        if (task := self._task_or_say()) is not None:
            task_id = task.task_id
            self._act(lambda: request_retry(self.cli, task_id))

    def action_pause(self) -> None:
        agent_id = self._focused_agent()
        agent = self.model.state.agents.get(agent_id) if agent_id else None
        if agent is None:
            self.say("no agent selected", error=True)
            return
        a, now = agent.agent_id, time.time()
        if agent.status == "paused":
            resume = t.AgentResumeRequested(at=now, agent_id=a)
            self._act(lambda: request_agent(self.cli, a, resume, "resume"))
        else:
            pause = t.AgentPauseRequested(at=now, agent_id=a)
            self._act(lambda: request_agent(self.cli, a, pause, "pause"))

    def _answer(self, allowed: bool) -> None:
        approval_id = self.table("approvals").selected()
        if approval_id is None:
            self.say("no approval is waiting", error=True)
            return
        self._act(lambda: answer(self.cli, approval_id, allowed=allowed, always=False, reason=""))

    def action_approve(self) -> None:
        self._answer(True)

    def action_deny(self) -> None:
        self._answer(False)

    def action_logs(self) -> None:
        task = self._task_or_say()
        if task is None:
            return
        try:
            path = log_path(self.cli, task, None)
        except ForgeError as e:
            self.say(redact(str(e)), error=True)
            return
        self.push_screen(TranscriptScreen(task, path))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a task row opens its transcript."""
        if event.data_table.id in ("running", "queue", "finished"):
            self.action_logs()


def _rss(proc: psutil.Process) -> int:
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total


def _rss_of(task: TaskState) -> int | None:
    """The resident memory of a running attempt's process tree, if it runs on this machine."""
    if task.pid is None:
        return None
    try:
        proc = psutil.Process(task.pid)
        if task.create_time is not None and abs(proc.create_time() - task.create_time) > 0.05:
            return None  # the pid was reused
        return _rss(proc)
    except psutil.Error:
        return None
