"""`forge top` as a command: a picture of the view without a terminal, bad input refused with
one line, and its transcript screen rendering as `forge task logs` does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from events import types as t
from events.replay import replay
from events.store import EventStore
from forge.cli.top.follow import LogFollower
from forge.cli.top.transcript import transcript_lines
from tests.cli.helpers import completed_task, invoke, one_error_line, store_of


def test_screenshot_saves_a_picture_of_the_view(
    forge_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    completed_task(redis_client, "task-pictured")
    queued = invoke(["task", "submit", "--name", "in the queue", "-c", "true"])
    assert queued.exit_code == 0, queued.output
    target = tmp_path / "top.svg"
    result = invoke(["top", "--screenshot", str(target), "--size", "140x40"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"saved {target}"
    picture = target.read_text()
    assert picture.startswith("<svg")
    text = picture.replace("&#160;", " ")
    for shown in ("agents", "running", "queue", "finished", queued.output.strip(), "in the queue"):
        assert shown in text, shown


def test_without_a_terminal_it_says_so(forge_env: dict[str, str]) -> None:
    result = invoke(["top"])
    assert result.exit_code == 1
    assert "needs a terminal" in one_error_line(result)


def test_a_bad_size_is_refused(forge_env: dict[str, str], tmp_path: Path) -> None:
    for size in ("wide", "10x10", "200x5", "x40"):
        result = invoke(["top", "--screenshot", str(tmp_path / "x.svg"), "--size", size])
        assert result.exit_code == 2, size
        assert "--size" in one_error_line(result)
        assert not (tmp_path / "x.svg").exists()


def test_a_claude_transcript_reads_as_forge_task_logs_prints_it(
    forge_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The transcript screen renders a claude attempt's stream-json with the same renderer
    as `forge task logs`, line for line, secrets masked."""
    log = tmp_path / "attempt-1.log"
    lines = [
        {"type": "system", "subtype": "init", "model": "claude-sonnet-4-5", "cwd": "/work"},
        {
            "type": "assistant",
            "message": {
                "content": [
                    {"type": "text", "text": "Reading the parser first."},
                    {"type": "tool_use", "id": "tu-1", "name": "Bash", "input": {"command": "ls"}},
                ]
            },
        },
        {"type": "result", "subtype": "success", "result": "done", "total_cost_usd": 0.01},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    now = time.time()
    spec = t.TaskDefinition(runtime="claude", prompt="fix the parser")
    store_of(redis_client).append_batch(
        [
            t.TaskSubmitted(at=now, task_id="task-claude", spec=spec),
            t.TaskAssigned(at=now, task_id="task-claude", attempt=1, agent_id="agent-c", epoch=1),
            t.TaskStarted(
                at=now, task_id="task-claude", attempt=1, agent_id="agent-c", log_path=str(log)
            ),
        ]
    )
    printed = invoke(["task", "logs", "task-claude"])
    assert printed.exit_code == 0, printed.stderr
    state, _ = replay(store_of(redis_client))
    shown = transcript_lines(str(log), state.tasks["task-claude"], None)
    assert shown == printed.stdout.splitlines()
    assert any("Reading the parser first." in line for line in shown)


def test_the_follower_says_when_the_log_cannot_be_read(tmp_path: Path) -> None:
    """A log that cannot be reached is reported (the view shows it at the top), not fatal."""
    client = redis.Redis(unix_socket_path=str(tmp_path / "gone.sock"), socket_connect_timeout=0.2)
    follower = LogFollower(EventStore(client, "gone"), "0-0")
    follower.start()
    try:
        deadline = time.monotonic() + 10
        while follower.error is None and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting on a condition with a deadline
        assert follower.error is not None
        assert follower.drain() == []
    finally:
        follower.stop()
        client.close()
