"""The CLI side of spend and retries: --retry-on-exit recorded in the definition (flag and
tasks file), --help saying which failures are retried, and live spend in task show / status."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from events import types as t
from tests.cli.helpers import invoke, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


@pytest.fixture
def client(forge_env: dict[str, str], redis_client: redis.Redis) -> redis.Redis:
    return redis_client


def _definition(client: redis.Redis, task_id: str) -> t.TaskDefinition:
    (submitted,) = [
        e.event
        for e in store_of(client).read_range()
        if isinstance(e.event, t.TaskSubmitted) and e.event.task_id == task_id
    ]
    return submitted.spec


def test_retry_on_exit_is_recorded_from_the_flag_and_a_tasks_file(
    client: redis.Redis, tmp_path: Path
) -> None:
    flagged = invoke(["task", "submit", "--retry-on-exit", "-c", "false"]).output.strip()
    plain = invoke(["task", "submit", "-c", "false"]).output.strip()
    assert _definition(client, flagged).retry_on_exit is True
    assert _definition(client, plain).retry_on_exit is False
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[defaults]\nretry_on_exit = true\n[[task]]\ncommand = "false"\n'
        '[[task]]\ncommand = "true"\nretry_on_exit = false\n'
    )
    result = invoke(["task", "submit", "--file", str(tasks)])
    assert result.exit_code == 0, result.output
    first, second = result.output.split()
    assert _definition(client, first).retry_on_exit is True
    assert _definition(client, second).retry_on_exit is False
    assert "retry on exit: yes" in invoke(["task", "show", flagged]).output


def test_help_says_which_failures_are_retried(client: redis.Redis) -> None:
    text = " ".join(invoke(["task", "submit", "--help"]).output.split())
    assert "a failing exit code is not, unless --retry-on-exit" in text
    assert "across all its attempts" in text


def test_show_and_status_give_the_spend_of_a_running_attempt(client: redis.Redis) -> None:
    now = time.time()
    spec = t.TaskDefinition(runtime="claude", prompt="work", budget_usd=2.0)
    store_of(client).append_batch(
        [
            t.TaskSubmitted(at=now, task_id="task-live", spec=spec),
            t.TaskAssigned(at=now, task_id="task-live", attempt=1, agent_id="agent-x", epoch=1),
            t.TaskStarted(at=now, task_id="task-live", attempt=1, agent_id="agent-x"),
            t.TaskUsage(at=now, task_id="task-live", attempt=1, input_tokens=900, cost_usd=0.25),
            t.TaskUsage(at=now, task_id="task-live", attempt=1, input_tokens=1900, cost_usd=0.5),
            t.BudgetLimitSet(at=now, limit_usd=0.4),
        ]
    )
    shown = invoke(["task", "show", "task-live"]).output
    assert "cost: $0.5000 of $2.0000 so far   tokens: 1900 in" in shown
    status = invoke(["status"]).output
    assert "spend: $0.5000 of $0.40 (exhausted: no new claude attempts)" in status
    assert "$0.5000" in status.split("RUNNING", 1)[1]
    assert "$0.5000" in invoke(["task", "list"]).output
