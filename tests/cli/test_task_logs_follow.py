"""`forge task logs --follow` ends when the attempt has ended, also when its wrapper died before
writing the status file its log is otherwise followed until (the log records the end)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from events import types as t
from tests.cli.helpers import store_of

pytestmark = pytest.mark.usefixtures("forge_env")


def _running(client: redis.Redis, log: Path, task_id: str = "t-dead-shim") -> str:
    """A task whose attempt 1 runs, writing to `log` (no status file: its shim died)."""
    log.write_text("first line\nsecond line\n")
    now = time.time()
    store_of(client).append_batch(
        [
            t.TaskSubmitted(at=now, task_id=task_id, spec=t.TaskDefinition(command=["x"])),
            t.TaskAssigned(at=now, task_id=task_id, attempt=1, agent_id="agent-x", epoch=1),
            t.TaskStarted(
                at=now, task_id=task_id, attempt=1, agent_id="agent-x", log_path=str(log)
            ),
        ]
    )
    return task_id


def _lost(client: redis.Redis, task_id: str) -> None:
    now = time.time()
    store_of(client).append_batch(
        [
            t.TaskFailed(at=now, task_id=task_id, attempt=1, failure="lost", transient=True),
            t.TaskDeadLettered(at=now, task_id=task_id, attempts=1, reason="lost"),
        ]
    )


def _follow(forge_env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "forge", "task", "logs", *args, "--follow"]
    env = {**os.environ, **forge_env}
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("attempt", [[], ["--attempt", "1"]])
def test_following_an_attempt_the_log_has_ended_ends_at_once(
    redis_client: redis.Redis, forge_env: dict[str, str], tmp_path: Path, attempt: list[str]
) -> None:
    task_id = _running(redis_client, tmp_path / "attempt-1.log")
    _lost(redis_client, task_id)
    follower = _follow(forge_env, task_id, *attempt)
    try:
        stdout, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, stderr
    assert stdout.splitlines() == ["first line", "second line"]


def test_following_ends_when_the_log_records_the_end_of_the_attempt(
    redis_client: redis.Redis, forge_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "attempt-1.log"
    task_id = _running(redis_client, log)
    follower = _follow(forge_env, task_id)
    try:
        time.sleep(1.0)  # it follows the file meanwhile: what is written is printed
        with log.open("a") as f:
            f.write("third line\n")
        time.sleep(1.0)
        assert follower.poll() is None  # the attempt runs: it goes on following
        _lost(redis_client, task_id)
        stdout, stderr = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, stderr
    assert stdout.splitlines() == ["first line", "second line", "third line"]
