"""True spend with the real Claude Code binary: live usage, kept spend, the task budget.

The orchestrator drives the real `claude` against the mock Messages API (`tests/mock_anthropic`);
what is checked is what lands in the log and the fleet state.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from events import types as t
from events.state import FleetState
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
from tests.claude_agents import BINARY, needs_claude
from tests.mock_anthropic import DEFAULT_MODEL, Hang, MockAnthropic, Stall, Text, ToolUse, Usage

API_KEY = "sk-ant-api03-forge-spend-key-0123456789"

pytestmark = needs_claude


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fcs", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def runtimes(mock: MockAnthropic) -> dict[str, ClaudeRuntime]:
    environ = {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": mock.url,
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    runtime = ClaudeRuntime(
        BINARY,
        default_model=DEFAULT_MODEL,
        environ=environ,
        progress_interval=0.0,
        usage_interval=0.0,  # every new figure goes out: the test counts them
    )
    return {"claude": runtime}


def definition(home: Path, work: Path, prompt: str, **extra: object) -> dict[str, object]:
    return {
        "runtime": "claude",
        "prompt": prompt,
        "cwd": str(work),
        "env": {"HOME": str(home), "IS_SANDBOX": "1"},
        **extra,
    }


def kill_claude(state: FleetState, task_id: str) -> None:
    """SIGKILL the task's claude process (a child of the attempt's shim), as the OOM killer
    would: no result line, the shim records the signal."""
    shim = psutil.Process(state.tasks[task_id].pid or 0)
    agents = [p for p in shim.children(recursive=True) if "claude" in " ".join(p.cmdline())]
    assert agents, [p.cmdline() for p in shim.children(recursive=True)]
    for process in agents:
        process.send_signal(signal.SIGKILL)


def running_past(state: FleetState, task_id: str, cost: float) -> bool:
    task = state.tasks.get(task_id)
    return task is not None and task.state == "running" and task.cost_usd > cost


def usage_costs(store: object, task_id: str) -> list[float]:
    return [e.cost_usd for e in events_of(store, t.TaskUsage, task_id)]  # type: ignore[arg-type]


def test_spend_grows_while_the_agent_runs_and_a_killed_attempt_keeps_it(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    mock.script(
        ToolUse(
            "Bash", {"command": "echo one", "description": "one"}, usage=Usage(input_tokens=2000)
        ),
        ToolUse(
            "Bash", {"command": "echo two", "description": "two"}, usage=Usage(input_tokens=3000)
        ),
        ToolUse(
            "Bash", {"command": "echo six", "description": "six"}, usage=Usage(input_tokens=4000)
        ),
        Hang(),
    )
    with running_fleet(redis_client, runtimes(mock), config(tmp_path / "logs")) as (fleet, store):
        submit(store, "live", **definition(home, work, "count", max_attempts=1))
        state = wait_for(
            fleet,
            lambda s: running_past(s, "live", 0.0) and len(usage_costs(store, "live")) >= 3,
            timeout=60,
        )
        costs = usage_costs(store, "live")
        assert costs == sorted(costs)
        assert len(set(costs)) >= 3  # one figure per model turn
        assert state.tasks["live"].cost_usd == pytest.approx(costs[-1])
        assert state.total_cost_usd == pytest.approx(costs[-1])
        mock.wait_for_turns(4)  # the fourth request hangs: the agent is mid-run
        live = fleet.state()
        kill_claude(live, "live")
        state = wait_for(fleet, all_terminal("live"), timeout=30)
        task = state.tasks["live"]
        assert (task.state, task.history[0].failure) == ("dead_lettered", "crash")
        assert "SIGKILL" in (task.history[0].reason or "")
        # 2000 + 3000 + 4000 uncached input tokens at Sonnet 4.5's $3/MTok, plus output
        assert task.history[0].cost_usd > 0.027
        assert task.cost_usd == pytest.approx(live.tasks["live"].cost_usd)
        assert task.input_tokens == 9000
        assert state.total_cost_usd == pytest.approx(task.cost_usd)
        assert_replay_matches(store, state)


def test_the_cli_total_replaces_the_estimate_without_double_counting(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    mock.script(
        ToolUse(
            "Bash",
            {"command": "echo a", "description": "a"},
            usage=Usage(input_tokens=1500, output_tokens=400),
        ),
        Text("Done.", usage=Usage(input_tokens=1800, output_tokens=300)),
    )
    with running_fleet(redis_client, runtimes(mock), config(tmp_path / "logs")) as (fleet, store):
        submit(store, "done", **definition(home, work, "finish"))
        state = wait_for(fleet, all_terminal("done"), timeout=60)
        task = state.tasks["done"]
        assert task.state == "completed", (task.last_failure, task.last_reason)
        (completed,) = events_of(store, t.TaskCompleted, "done")
        costs = usage_costs(store, "done")
        # the live figures undercount output (a placeholder on each line); the CLI's total,
        # recorded last, is what the attempt cost
        expected = (3300 * 3 + 700 * 15) / 1e6
        assert completed.cost_usd == pytest.approx(expected)
        assert costs[-1] == pytest.approx(expected)
        assert any(c < expected for c in costs[:-1])
        assert task.cost_usd == pytest.approx(expected)
        assert state.total_cost_usd == pytest.approx(expected)
        assert (task.input_tokens, task.output_tokens) == (3300, 700)
        assert_replay_matches(store, state)


def test_a_spent_task_budget_stops_the_next_attempt(
    redis_client: redis.Redis, mock: MockAnthropic, home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # the turn's usage is printed, its end never comes: the CLI's own budget check (after a
    # turn) does not run, and the attempt is killed having spent more than the task's budget
    mock.script(Stall("Let me think about this.", usage=Usage(input_tokens=5000)))
    with running_fleet(redis_client, runtimes(mock), config(tmp_path / "logs")) as (fleet, store):
        submit(store, "capped", **definition(home, work, "think", budget_usd=0.01, max_attempts=3))
        state = wait_for(
            fleet,
            lambda s: running_past(s, "capped", 0.01),
            timeout=60,
        )
        kill_claude(state, "capped")
        state = wait_for(fleet, all_terminal("capped"), timeout=30)
        task = state.tasks["capped"]
        assert (task.state, task.last_failure) == ("failed", "max_budget")
        assert "task budget spent" in (task.last_reason or "")
        assert task.attempt == 1
        assert len(events_of(store, t.TaskAssigned, "capped")) == 1
        assert [r.failure for r in task.history] == ["crash"]
        assert_replay_matches(store, state)
