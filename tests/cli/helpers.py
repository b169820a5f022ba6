"""Helpers of the CLI tests: invoking `forge` in-process, and reading the log they write."""

from __future__ import annotations

import time

import redis
from click.testing import CliRunner, Result

from events import types as t
from events.store import EventStore
from forge.cli.main import cli

NAMESPACE = "forge"  # the default namespace, which the CLI uses under `forge_env`


def invoke(args: list[str], stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli, args, input=stdin, catch_exceptions=False)


def store_of(client: redis.Redis, namespace: str = NAMESPACE) -> EventStore:
    return EventStore(client, namespace)


def log_length(client: redis.Redis, namespace: str = NAMESPACE) -> int:
    return int(client.xlen(store_of(client, namespace).keys.log))


def one_error_line(result: Result) -> str:
    """The single `Error: ...` line of a failed command (click prints usage lines before the
    error of a usage mistake, exit code 2; every other error is exactly one line)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    if result.exit_code == 1:
        assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def completed_task(client: redis.Redis, task_id: str = "task-done") -> str:
    """A task that ran and completed, written straight into the log."""
    now = time.time()
    store_of(client).append_batch(
        [
            t.TaskSubmitted(at=now, task_id=task_id, spec=t.TaskDefinition(command=["true"])),
            t.TaskAssigned(at=now, task_id=task_id, attempt=1, agent_id="agent-x", epoch=1),
            t.TaskStarted(at=now, task_id=task_id, attempt=1, agent_id="agent-x"),
            t.TaskCompleted(at=now, task_id=task_id, attempt=1, agent_id="agent-x", exit_code=0),
        ]
    )
    return task_id
