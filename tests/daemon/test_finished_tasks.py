"""A real daemon with finished tasks out of its hot state: a cancelled task retried by hand
comes back with its history, a dependency on a finished task is met, and `events verify`
finds the daemon's live state equal to a replay."""

from __future__ import annotations

import json

from events.replay import replay
from tests.daemon.conftest import DaemonHarness


def _state_of(h: DaemonHarness, task_id: str) -> str | None:
    return replay(h.store, use_snapshot=False)[0].task_state(task_id)


def test_retry_of_an_evicted_task_and_a_dependency_on_one(harness: DaemonHarness) -> None:
    h = harness
    mark = h.home / "ran-once"
    started = h.forge("daemon", "start")
    assert started.returncode == 0, started.stderr
    # the first attempt waits to be cancelled, the second completes
    command = f"test -e {mark} && echo second && exit 0; touch {mark}; sleep 60"
    task_id = h.forge("task", "submit", "-c", command).stdout.strip()
    h.wait_for("the first attempt to run", lambda: _state_of(h, task_id) == "running")
    assert h.forge("task", "cancel", task_id).returncode == 0
    h.wait_for("the cancel", lambda: _state_of(h, task_id) == "cancelled")
    hot, _ = replay(h.store, use_snapshot=False)
    assert task_id not in hot.tasks
    assert hot.finished[task_id].startswith("cancelled|1|")

    retried = h.forge("task", "retry", task_id)
    assert retried.returncode == 0, retried.stderr
    h.wait_for("the retry to complete", lambda: _state_of(h, task_id) == "completed")
    shown = json.loads(h.forge("task", "show", task_id, "--json").stdout)
    assert shown["attempt"] == 2
    assert [r["outcome"] for r in shown["history"]] == ["cancelled", "completed"]
    assert h.forge("task", "logs", task_id).stdout == "second\n"

    after = h.forge("task", "submit", "-c", "echo after", "--after", task_id).stdout.strip()
    h.wait_for("the dependant to complete", lambda: _state_of(h, after) == "completed")

    h.wait_for(
        "the heartbeat to catch up",
        lambda: (
            (v := h.forge("events", "verify")).returncode == 0
            and "equals the replayed state" in v.stdout
        ),
    )
    assert h.forge("daemon", "stop").returncode == 0


def test_an_idle_daemon_summarises_what_finished(harness: DaemonHarness) -> None:
    """The daemon's task indexer is fed what the orchestrator applies and is woken by a
    snapshot or thousands of entries: a few tasks and then nothing would leave their summaries
    (what `forge task list` reads of finished tasks) unwritten, and the entries held. It
    indexes them within seconds by itself: the summaries are there without any reader having
    updated the index."""
    h = harness
    assert h.forge("daemon", "start").returncode == 0
    ids = [h.forge("task", "submit", "-c", f"echo {n}").stdout.strip() for n in range(3)]
    h.wait_for("the tasks", lambda: all(_state_of(h, i) == "completed" for i in ids))
    summaries = h.store.keys.finished_summaries
    h.wait_for("their summaries", lambda: h.store.client.hlen(summaries) == len(ids))
    assert sorted(k.decode() for k in h.store.client.hkeys(summaries)) == sorted(ids)
    assert h.forge("daemon", "stop").returncode == 0
