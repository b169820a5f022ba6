"""Shell form and exec form of a command (Docker's convention), with real processes.

One string runs under `/bin/sh -c STRING`; several `--command` options (or an array in a tasks
file) are exec'd as given, every argument intact.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from events.replay import replay
from events.state import TaskState
from events.store import EventStore
from events.task_index import TaskIndex
from tests.cli.helpers import invoke

pytestmark = pytest.mark.usefixtures("forge_env")


def _run(args: list[str], client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> TaskState:
    """Run one task with `forge run` in its own namespace; the ended task."""
    result = invoke(["run", *args, "--namespace", "forms"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    monkeypatch.setenv("FORGE_REDIS_NAMESPACE", "forms")
    store = EventStore(client, "forms")
    state = TaskIndex(store).full_state(replay(store)[0])  # the finished task read back
    (task,) = state.tasks.values()
    return task


def _output(task: TaskState) -> list[str]:
    result = invoke(["task", "logs", task.task_id])
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_one_command_string_runs_under_a_shell(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _run(
        ["--command", "echo one && echo 'two  three'; echo $((6 * 7))"], redis_client, monkeypatch
    )
    assert task.definition.command == [
        "/bin/sh",
        "-c",
        "echo one && echo 'two  three'; echo $((6 * 7))",
    ]
    assert _output(task) == ["one", "two  three", "42"]


def test_a_string_in_a_tasks_file_runs_under_a_shell(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text('[[task]]\ncommand = "sleep 0; echo hi | tr a-z A-Z"\n')
    assert _output(_run([str(path)], redis_client, monkeypatch)) == ["HI"]


def test_an_array_in_a_tasks_file_is_execd_with_each_argument_intact(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.toml"
    path.write_text('[[task]]\ncommand = ["printf", "[%s]\\\\n", "a b", "$HOME", "x && y"]\n')
    task = _run([str(path)], redis_client, monkeypatch)
    assert task.definition.command == ["printf", "[%s]\\n", "a b", "$HOME", "x && y"]
    assert _output(task) == ["[a b]", "[$HOME]", "[x && y]"]


def test_repeated_command_options_are_execd_with_no_shell(redis_client: redis.Redis) -> None:
    result = invoke(["task", "submit", "-c", "printf", "-c", "%s", "-c", "a b; echo c"])
    assert result.exit_code == 0, result.stderr
    state, _ = replay(EventStore(redis_client, "forge"))
    definition = state.tasks[result.stdout.strip()].definition
    assert definition.command == ["printf", "%s", "a b; echo c"]
