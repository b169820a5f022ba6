"""Real Claude Code agents run by the actors: events, final state, cost and the breaker.

The orchestrator drives the real `claude` binary against the mock Messages API. These tests
check what the runtime tests cannot: what ends up in the log and the fleet state.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from actors.breaker import BreakerPolicy
from events import types as t
from forge.runtimes.claude import ClaudeRuntime
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    events_of,
    running_fleet,
    submit,
    wait_for,
)
from tests.claude_agents import claude_runtimes, needs_claude
from tests.mock_anthropic import ApiError, MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-fleet-key-0123456789"
pytestmark = needs_claude


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fcf", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def claude(mock: MockAnthropic) -> dict[str, ClaudeRuntime]:
    return claude_runtimes(mock, API_KEY)


def spec(home: Path, work: Path, prompt: str, **extra: object) -> dict[str, object]:
    return {
        "runtime": "claude",
        "prompt": prompt,
        "cwd": str(work),
        "env": {"HOME": str(home)},
        **extra,
    }


def test_a_claude_task_records_session_usage_and_cost(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    mock.script(
        ToolUse("Bash", {"command": "echo hi > hi.txt", "description": "write"}, text="Writing."),
        Text("Wrote hi.txt."),
    )
    with running_fleet(redis_client, claude(mock), config(tmp_path / "logs")) as (fleet, store):
        # the policy a submitted task records (`forge task submit` fills in the defaults)
        definition = spec(home, work, "write hi.txt", permission_mode="acceptEdits")
        submit(store, "c1", **definition)
        state = wait_for(fleet, all_terminal("c1"), timeout=60)
        task = state.tasks["c1"]
        assert task.state == "completed", (task.last_failure, task.last_reason)
        assert task.result == "Wrote hi.txt."
        assert task.session_id is not None
        assert task.cost_usd > 0
        assert state.total_cost_usd == pytest.approx(task.cost_usd)
        assert events_of(store, t.TaskCheckpointed, "c1")[0].session_id == task.session_id
        assert events_of(store, t.TaskUsage, "c1")
        assert not events_of(store, t.BreakerOpened)
        log = Path(task.log_path or "").read_text()
        assert API_KEY not in log
        assert_replay_matches(store, state)


def test_overloaded_api_opens_the_breaker_and_the_task_waits(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    overloaded = ApiError.overloaded()
    mock.script(overloaded, overloaded, overloaded, overloaded, Text("Finally."))
    cfg = config(
        tmp_path / "logs",
        breaker=BreakerPolicy(failure_threshold=2, success_threshold=1, open_timeout=0.5),
    )
    with running_fleet(redis_client, claude(mock), cfg) as (fleet, store):
        definition = spec(home, work, "say hello", max_attempts=1)
        submit(store, "c2", **definition)
        state = wait_for(fleet, all_terminal("c2"), timeout=90)
        task = state.tasks["c2"]
        assert task.state == "completed"
        assert [r.failure for r in task.history] == ["api_error", "api_error", None]
        (opened,) = events_of(store, t.BreakerOpened)
        assert opened.name == "model-api"
        assert events_of(store, t.TaskAssigned, "c2")[-1].at >= opened.until
        state = wait_for(fleet, lambda s: s.breakers["model-api"].state == "closed")
        assert_replay_matches(store, state)


def test_bad_credentials_fail_fast_without_retry(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    mock.script(ApiError.unauthorized(), ApiError.unauthorized())
    with running_fleet(redis_client, claude(mock), config(tmp_path / "logs")) as (fleet, store):
        definition = spec(home, work, "hello", max_attempts=3)
        submit(store, "c3", **definition)
        state = wait_for(fleet, all_terminal("c3"), timeout=60)
        task = state.tasks["c3"]
        assert (task.state, task.last_failure, task.attempt) == ("failed", "auth", 1)
        assert not events_of(store, t.TaskRetryScheduled, "c3")
        assert API_KEY not in (task.last_reason or "")


def test_fleet_budget_stops_new_attempts(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cfg = config(tmp_path / "logs", max_agents=1, fleet_budget_usd=1e-9)
    with running_fleet(redis_client, claude(mock), cfg) as (fleet, store):
        for name in ("b1", "b2"):
            definition = spec(home, work, f"task {name}")
            submit(store, name, **definition)
        state = wait_for(fleet, lambda s: s.budget_exhausted and all_terminal("b1")(s), timeout=60)
        assert state.tasks["b1"].state == "completed"
        assert state.tasks["b2"].state == "queued"
        (exhausted,) = events_of(store, t.BudgetExhausted)
        assert exhausted.spent_usd > exhausted.limit_usd
