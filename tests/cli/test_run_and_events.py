"""`forge run` (a real in-process fleet of shell agents), then `forge events ...` on its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from events.replay import replay
from events.store import EventStore
from events.task_index import TaskIndex
from tests.cli.helpers import invoke, one_error_line

pytestmark = pytest.mark.usefixtures("forge_env")

TASKS = """
[[task]]
name = "first"
command = "sh -c 'echo first; echo API_TOKEN=$API_TOKEN'"
priority = 1

[[task]]
name = "second"
command = ["sh", "-c", "echo second"]
after = ["first"]
"""


@pytest.fixture
def batch(tmp_path: Path, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a two-task batch in namespace `batch`; later commands read that namespace.

    The first task prints a secret it gets the only way a secret reaches an agent: from the
    environment, through the allow-list (never from the task definition, which is logged)."""
    monkeypatch.setenv("API_TOKEN", "canary-secret-4242")
    monkeypatch.setenv("FORGE_RUNTIME_ENV_ALLOWLIST", "PATH,HOME,API_TOKEN")
    path = tmp_path / "tasks.toml"
    path.write_text(TASKS)
    result = invoke(["run", str(path), "--namespace", "batch", "--agents", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert [t["state"] for t in summary["tasks"]] == ["completed", "completed"]
    monkeypatch.setenv("FORGE_REDIS_NAMESPACE", "batch")
    return "batch"


def test_run_exits_1_when_a_task_fails(tmp_path: Path) -> None:
    result = invoke(["run", "--command", "true", "--command", "sh -c 'exit 3'"])
    assert result.exit_code == 1
    assert "1/2 tasks completed" in result.stdout
    assert "exited with code 3" in result.stdout


def test_run_needs_something_to_run() -> None:
    result = invoke(["run"])
    assert result.exit_code == 2
    assert "give a tasks FILE" in one_error_line(result)


def test_events_commands_on_a_real_batch(batch: str, tmp_path: Path) -> None:
    tail = invoke(["events", "tail", "-n", "1000", "--type", "task.completed", "--json"])
    completed = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(completed) == 2

    stats = json.loads(invoke(["events", "stats", "--json"]).stdout)
    assert stats["by_type"]["task.completed"] == 2
    assert stats["quarantined"] == 0
    assert stats["snapshots"]  # the fleet writes one when it stops

    verify = invoke(["events", "verify"])
    assert verify.exit_code == 0, verify.stdout
    assert "log verified" in verify.stdout

    def states(replayed: dict[str, Any]) -> list[str]:  # finished tasks: in `finished`
        hot = [t["state"] for t in replayed["tasks"].values()]
        return sorted(hot + [v.split("|")[0] for v in replayed["finished"].values()])

    replayed = json.loads(invoke(["events", "replay", "--json"]).stdout)
    assert states(replayed) == ["completed", "completed"]
    assert replayed["tasks"] == {}
    first_id = completed[0]["id"]
    then = json.loads(invoke(["events", "replay", "--until", first_id, "--json"]).stdout)
    assert states(then) == ["completed", "pending"]


def test_export_is_json_lines_with_secrets_masked(batch: str, tmp_path: Path) -> None:
    out = tmp_path / "log.jsonl"
    result = invoke(["events", "export", str(out)])
    assert result.exit_code == 0
    text = out.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["type"] == "task.submitted"
    assert "canary-secret-4242" not in text


def test_task_logs_of_a_finished_task(batch: str, redis_client: redis.Redis) -> None:
    state, _ = replay(EventStore(redis_client, batch))
    state = TaskIndex(EventStore(redis_client, batch)).full_state(state)  # finished tasks too
    first = next(t for t in state.tasks.values() if t.definition.name == "first")
    result = invoke(["task", "logs", first.task_id])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "first"
    assert "canary-secret-4242" not in result.stdout
    assert "API_TOKEN=***" in result.stdout  # the agent had the secret; the log masks it


def test_verify_reports_a_diverging_index(batch: str, redis_client: redis.Redis) -> None:
    store = EventStore(redis_client, batch)
    task_id = next(iter(store.index_entries()))
    redis_client.hset(store.keys.index, task_id, "queued|0|")
    result = invoke(["events", "verify"])
    assert result.exit_code == 1
    assert "FAIL  task index" in result.stdout
