"""`forge task ...` through click's runner, against the session server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from events.replay import replay
from tests.cli.helpers import completed_task, invoke, log_length, one_error_line, store_of

pytestmark = pytest.mark.usefixtures("forge_env")


@pytest.fixture
def client(forge_env: dict[str, str], redis_client: redis.Redis) -> redis.Redis:
    return redis_client


def test_submit_prints_the_id_and_queues_the_task(client: redis.Redis) -> None:
    result = invoke(["task", "submit", "--command", "echo 'hello world'", "-p", "2", "--tag", "x"])
    assert result.exit_code == 0, result.stderr
    task_id = result.stdout.strip()
    state, _ = replay(store_of(client))
    task = state.tasks[task_id]
    assert task.state == "queued"
    assert task.definition.command == ["/bin/sh", "-c", "echo 'hello world'"]
    assert task.definition.priority == 2
    assert task.definition.tags == ("x",)


def test_repeated_command_options_are_verbatim_arguments(client: redis.Redis) -> None:
    result = invoke(["task", "submit", "-c", "sh", "-c", "-c", "-c", "echo 'a b'"])
    assert result.exit_code == 0, result.stderr
    state, _ = replay(store_of(client))
    assert state.tasks[result.stdout.strip()].definition.command == ["sh", "-c", "echo 'a b'"]


def test_a_prompt_defaults_to_the_claude_runtime(client: redis.Redis) -> None:
    result = invoke(["task", "submit", "fix the failing test", "--model", "opus"])
    assert result.exit_code == 0, result.stderr
    state, _ = replay(store_of(client))
    definition = state.tasks[result.stdout.strip()].definition
    assert (definition.runtime, definition.prompt, definition.model) == (
        "claude",
        "fix the failing test",
        "opus",
    )


def test_the_same_idempotency_key_returns_the_same_task(client: redis.Redis) -> None:
    first = invoke(["task", "submit", "-c", "true", "--idempotency-key", "k-1"])
    length = log_length(client)
    second = invoke(["task", "submit", "-c", "true", "--idempotency-key", "k-1", "--json"])
    assert second.exit_code == 0
    assert json.loads(second.stdout)["task_ids"] == [first.stdout.strip()]
    assert log_length(client) == length


def test_a_tasks_file_resolves_names_in_any_order(client: redis.Redis, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        """
        [defaults]
        priority = 4
        cwd = "work"

        [[task]]
        name = "second"
        command = ["echo", "two"]
        after = ["first"]

        [[task]]
        name = "first"
        command = "echo one"
        priority = 1
        """
    )
    result = invoke(["task", "submit", "--file", str(tasks)])
    assert result.exit_code == 0, result.stderr
    second_id, first_id = result.stdout.split()
    state, _ = replay(store_of(client))
    assert state.tasks[second_id].definition.after == (first_id,)
    assert state.tasks[second_id].state == "pending"
    assert state.tasks[first_id].definition.priority == 1
    assert state.tasks[second_id].definition.priority == 4
    assert state.tasks[first_id].definition.cwd == str(tmp_path / "work")


def test_list_show_history_and_json(client: redis.Redis) -> None:
    done = completed_task(client)
    queued = invoke(["task", "submit", "-c", "true", "--name", "later"]).stdout.strip()
    listed = invoke(["task", "list", "--state", "completed", "--json"])
    assert [x["task_id"] for x in json.loads(listed.stdout)] == [done]
    table = invoke(["task", "list"]).stdout
    assert done in table
    assert queued in table
    assert "later" in table
    shown = invoke(["task", "show", done])
    assert "state: completed" in shown.stdout
    assert "agent-x" in shown.stdout
    history = invoke(["task", "history", done, "--json"])
    types = [e["type"] for e in json.loads(history.stdout)]
    assert types == ["task.submitted", "task.assigned", "task.started", "task.completed"]


def test_cancel_and_retry_are_recorded_without_a_daemon(client: redis.Redis) -> None:
    task_id = invoke(["task", "submit", "-c", "true"]).stdout.strip()
    result = invoke(["task", "cancel", task_id])
    assert result.exit_code == 0
    assert "no daemon is running" in result.stdout
    state, _ = replay(store_of(client))
    assert task_id in state.cancel_requests


def test_logs_of_a_task_that_never_started(client: redis.Redis) -> None:
    task_id = invoke(["task", "submit", "-c", "true"]).stdout.strip()
    result = invoke(["task", "logs", task_id])
    assert result.exit_code == 1
    assert "has not started yet" in one_error_line(result)


def _big_prompt() -> list[str]:
    return ["task", "submit", "x" * (1024 * 1024)]


def _file(tmp: Path, name: str, content: bytes) -> str:
    path = tmp / name
    path.write_bytes(content)
    return str(path)


BAD_INPUT: dict[str, tuple[Callable[[Path], list[str]], int, str]] = {
    "secret in --env": (
        lambda tmp: ["task", "submit", "-c", "true", "--env", "DEPLOY_TOKEN=abc123xyz"],
        1,
        "runtime.env_allowlist",
    ),
    "priority 0": (lambda tmp: ["task", "submit", "-c", "true", "-p", "0"], 2, "range"),
    "priority 9": (lambda tmp: ["task", "submit", "-c", "true", "-p", "9"], 2, "range"),
    "unknown runtime": (
        lambda tmp: ["task", "submit", "-c", "true", "--runtime", "nope"],
        1,
        "unknown runtime 'nope'",
    ),
    "missing file": (
        lambda tmp: ["task", "submit", "--file", str(tmp / "absent.toml")],
        2,
        "does not exist",
    ),
    "malformed tasks file": (
        lambda tmp: ["task", "submit", "--file", _file(tmp, "bad.toml", b"[[task]\nname=")],
        1,
        "not valid TOML",
    ),
    "unknown field": (
        lambda tmp: ["task", "submit", "-f", _file(tmp, "f.toml", b"[[task]]\ncomand='x'\n")],
        1,
        "unknown field",
    ),
    "cycle in a file": (
        lambda tmp: [
            "task",
            "submit",
            "-f",
            _file(
                tmp,
                "cycle.toml",
                b"[[task]]\nname='a'\ncommand='true'\nafter=['b']\n"
                b"[[task]]\nname='b'\ncommand='true'\nafter=['a']\n",
            ),
        ],
        1,
        "dependency cycle: a -> b -> a",
    ),
    "after an unknown id": (
        lambda tmp: ["task", "submit", "-c", "true", "--after", "task-nope"],
        1,
        "unknown task id",
    ),
    "a 1 MiB prompt": (lambda tmp: _big_prompt(), 1, "the limit is 256 KiB"),
    "non-UTF-8 file": (
        lambda tmp: ["task", "submit", "-f", _file(tmp, "latin.toml", b"[[task]]\nname='\xe9'\n")],
        1,
        "not UTF-8",
    ),
    "unknown task id": (lambda tmp: ["task", "show", "task-nope"], 1, "unknown task id"),
    "cancel unknown": (lambda tmp: ["task", "cancel", "task-nope"], 1, "unknown task id"),
    "cancel a finished task": (
        lambda tmp: ["task", "cancel", "task-done"],
        1,
        "already completed",
    ),
    "retry a completed task": (lambda tmp: ["task", "retry", "task-done"], 1, "is completed"),
    "shell without a command": (
        lambda tmp: ["task", "submit", "do it", "--runtime", "shell"],
        1,
        "needs a command",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(
    case: str, client: redis.Redis, tmp_path: Path
) -> None:
    completed_task(client)
    make_args, code, message = BAD_INPUT[case]
    before = log_length(client)
    result = invoke(make_args(tmp_path))
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert message in one_error_line(result)
    assert log_length(client) == before
