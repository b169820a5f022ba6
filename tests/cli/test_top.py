"""`forge top` driven headless with Textual's pilot against a real daemon and a real log: a task
seen queued, running and completed; keys that cancel, pause, retry and answer through the log;
a transcript; and a 10,000-task log followed within a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Log, Static

from events import types as t
from events.replay import replay
from forge.cli.app import App
from forge.cli.top.app import QUEUE_ROWS, TopApp
from forge.cli.top.transcript import TranscriptScreen
from forge.server import EmbeddedServer
from tests.daemon.conftest import DaemonHarness

SIZE = (160, 48)
WAIT = 30.0


@pytest.fixture
def harness(
    embedded_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DaemonHarness]:
    """A daemon harness whose home and namespace the in-process view reads too."""
    h = DaemonHarness(embedded_server)
    for name in ("FORGE_HOME", "FORGE_REDIS_URL", "FORGE_REDIS_NAMESPACE"):
        monkeypatch.setenv(name, h.env[name])
    yield h
    h.cleanup()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def until(pilot: Pilot[Any], what: str, predicate: Callable[[], object]) -> None:
    """Let the view run until `predicate` holds (a deadline, no fixed sleep)."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


def submit(h: DaemonHarness, *args: str) -> str:
    result = h.forge("task", "submit", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def state_of(view: TopApp, task_id: str) -> str | None:
    task = view.model.task(task_id)
    return task.state if task is not None else None


def status(view: TopApp) -> str:
    """The status line: what the last key's request did."""
    return str(view.query_one("#status", Static).render())


def agrees_with_replay(view: TopApp, h: DaemonHarness) -> bool:
    """The view's state equals a replay of the log up to the same position."""
    view.flush()
    state = view.model.state
    replayed, _ = replay(h.store, until=state.position, use_snapshot=False)
    return replayed.same_as(state)


def test_a_task_is_seen_queued_running_and_completed(harness: DaemonHarness) -> None:
    h = harness
    gate = h.home / "go"
    script = f"while [ ! -e {gate} ]; do sleep 0.02; done; echo top-saw-this"

    async def scenario() -> None:
        view = TopApp(App(None, {}))
        async with view.run_test(size=SIZE) as pilot:
            task_id = submit(h, "--name", "gated", "-c", script)
            await until(pilot, "the queued row", lambda: task_id in view.table("queue"))
            assert state_of(view, task_id) == "queued"
            assert task_id not in view.table("running")

            h.foreground()
            await until(
                pilot,
                "the running row",
                lambda: task_id in view.table("running") and state_of(view, task_id) == "running",
            )
            assert task_id not in view.table("queue")
            await until(pilot, "the busy agent", lambda: view.table("agents").row_count >= 1)

            gate.touch()
            await until(pilot, "the finished row", lambda: task_id in view.table("finished"))
            assert state_of(view, task_id) == "completed"
            assert task_id not in view.table("running")
            assert agrees_with_replay(view, h)

            # Enter on the finished row opens its transcript, read from the attempt's log
            view.table("finished").focus()
            await pilot.press("enter")
            await until(pilot, "the transcript", lambda: isinstance(view.screen, TranscriptScreen))
            log = view.screen.query_one(Log)
            await until(pilot, "the task's output", lambda: "top-saw-this" in "\n".join(log.lines))
            await pilot.press("escape")
            await until(
                pilot, "the main screen", lambda: not isinstance(view.screen, TranscriptScreen)
            )

    run(scenario)


def test_keys_cancel_a_running_task_and_pause_its_agent(harness: DaemonHarness) -> None:
    h = harness
    h.foreground()

    async def scenario() -> None:
        view = TopApp(App(None, {}))
        async with view.run_test(size=SIZE) as pilot:
            task_id = submit(h, "-c", "sleep 60")
            await until(pilot, "the running task", lambda: state_of(view, task_id) == "running")
            agent_id = view.model.state.tasks[task_id].agent_id
            assert agent_id is not None

            view.table("running").focus()
            await pilot.press("c")
            await until(pilot, "the cancelled task", lambda: state_of(view, task_id) == "cancelled")
            requests = [
                e.event for e in h.store.read_range() if isinstance(e.event, t.TaskCancelRequested)
            ]
            assert [r.task_id for r in requests] == [task_id]
            ended = [e.event for e in h.store.read_range() if isinstance(e.event, t.TaskCancelled)]
            assert [e.task_id for e in ended] == [task_id]
            assert task_id in view.table("finished")
            assert "cancel of" in status(view)

            view.table("agents").focus()
            await pilot.press("p")
            await until(
                pilot,
                "the paused agent",
                lambda: view.model.state.agents[agent_id].status == "paused",
            )
            await pilot.press("p")
            await until(
                pilot,
                "the resumed agent",
                lambda: view.model.state.agents[agent_id].status != "paused",
            )
            assert agrees_with_replay(view, h)

    run(scenario)


def test_keys_answer_approvals_and_retry_without_a_daemon(harness: DaemonHarness) -> None:
    """The view and its keys need no daemon: answers and retries are appended to the log the
    way `forge approve|deny` and `forge task retry` append them; an agent request says why it
    cannot be sent."""
    h = harness
    now = time.time()
    spec = t.TaskDefinition(command=["true"])
    h.store.append_batch(
        [
            t.AgentSpawned(at=now, agent_id="agent-1", runtime="shell"),
            t.TaskSubmitted(at=now, task_id="task-ask", spec=spec),
            t.TaskAssigned(at=now, task_id="task-ask", attempt=1, agent_id="agent-1", epoch=1),
            t.TaskStarted(at=now, task_id="task-ask", attempt=1, agent_id="agent-1"),
        ]
    )

    def ask(approval_id: str) -> None:
        at = time.time()
        h.store.append(
            t.ApprovalRequested(
                at=at,
                approval_id=approval_id,
                task_id="task-ask",
                attempt=1,
                tool="Bash",
                summary="make deploy",
                timeout=600,
                expires_at=at + 600,
            )
        )

    def answers() -> list[t.ApprovalAnswered]:
        return [e.event for e in h.store.read_range() if isinstance(e.event, t.ApprovalAnswered)]

    async def scenario() -> None:
        view = TopApp(App(None, {}))
        async with view.run_test(size=SIZE) as pilot:
            approvals = view.table("approvals")
            ask("ap-1")
            await until(pilot, "the waiting approval", lambda: "ap-1" in approvals)
            approvals.focus()
            await pilot.press("a")
            await until(pilot, "the answer", lambda: "ap-1" not in approvals)
            ask("ap-2")
            await until(pilot, "the second approval", lambda: "ap-2" in approvals)
            await pilot.press("d")
            await until(pilot, "the second answer", lambda: "ap-2" not in approvals)
            assert [(a.approval_id, a.allowed, a.by) for a in answers()] == [
                ("ap-1", True, "cli"),
                ("ap-2", False, "cli"),
            ]

            h.store.append_batch(
                [
                    t.TaskSubmitted(at=now, task_id="task-stop", spec=spec),
                    t.TaskCancelled(at=now, task_id="task-stop", reason="changed my mind"),
                ]
            )
            await until(pilot, "the ended task", lambda: "task-stop" in view.table("finished"))
            view.table("finished").focus()
            assert view.table("finished").selected() == "task-stop"
            await pilot.press("r")
            await until(pilot, "the retry request", lambda: "retry of task-stop" in status(view))
            assert "no daemon is running" in status(view)  # recorded, acted on when one starts
            retries = [
                e.event for e in h.store.read_range() if isinstance(e.event, t.TaskRetryRequested)
            ]
            assert [r.task_id for r in retries] == ["task-stop"]

            view.table("running").focus()
            await pilot.press("p")  # pausing needs a daemon to act on it: said, not sent
            await until(
                pilot,
                "the refusal",
                lambda: "start one with `forge daemon start`" in status(view),
            )
            assert not any(isinstance(e.event, t.AgentPauseRequested) for e in h.store.read_range())
            assert agrees_with_replay(view, h)

    run(scenario)


def test_ten_thousand_tasks_start_and_follow_within_a_bound(harness: DaemonHarness) -> None:
    """A log of 10,000 queued tasks: the view starts, draws only the head of the queue, and
    shows a new event within a bound, folding a burst of events in a few redraws."""
    h = harness
    now = time.time()
    for first in range(0, 10_000, 2_000):
        h.store.append_batch(
            t.TaskSubmitted(
                at=now,
                task_id=f"task-{i:05d}",
                spec=t.TaskDefinition(command=["true"], priority=1 + i % 5),
            )
            for i in range(first, first + 2_000)
        )

    async def scenario() -> None:
        began = time.perf_counter()
        view = TopApp(App(None, {}))
        async with view.run_test(size=SIZE) as pilot:
            await pilot.pause()
            startup = time.perf_counter() - began
            queue = view.table("queue")
            assert queue.row_count == QUEUE_ROWS
            assert queue.keys()[:2] == ["task-00000", "task-00005"]  # priority 1, FIFO
            assert view.model.state.queue_length() == 10_000

            sent = time.perf_counter()
            h.store.append(t.TaskCancelled(at=time.time(), task_id="task-00000", reason="bench"))
            await until(pilot, "the cancel", lambda: "task-00000" in view.table("finished"))
            shown = time.perf_counter() - sent
            assert "task-00000" not in queue
            assert queue.keys()[0] == "task-00005"

            redraws = view.redraws
            h.store.append_batch(
                t.TaskCancelled(at=time.time(), task_id=f"task-{i:05d}", reason="bench")
                for i in range(10, 1010)
            )
            await until(pilot, "the burst", lambda: view.model.counts.get("cancelled") == 1001)
            burst_redraws = view.redraws - redraws
            assert agrees_with_replay(view, h)
        print(
            f"\nforge top, 10,000 tasks: started in {startup * 1000:.0f} ms, showed a new event "
            f"in {shown * 1000:.0f} ms, folded 1,000 events in {burst_redraws} redraw(s)"
        )
        assert startup < 15.0
        assert shown < 1.0
        assert burst_redraws <= 20  # coalesced: ten redraws a second, not one per event

    run(scenario)
