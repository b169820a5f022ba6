"""A real Claude Code agent's work, landed: continued in the same session, diffed, merged,
attached to.

The real `claude` binary runs against the mock Messages API in its own worktree; it leaves its
file uncommitted, which the supervisor commits on the task's branch. `forge task continue`
queues a follow-up that must resume the *same* session (`--resume=<id>`, seen in the argv the
binary was given) in the same worktree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from events import types as t
from events.store import EventStore
from forge.cli.main import cli
from forge.runtimes.claude import ClaudeRuntime
from forge.runtimes.claude_command import bundled_binary
from forge.runtimes.workspace import GitWorkspaces
from forge.server import EmbeddedServer
from tests.actors.helpers import all_terminal, config, events_of, submit, wait_for
from tests.actors.helpers import running_fleet as fleet_on
from tests.forge.test_landing import git, make_repo
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Reply, Text, ToolUse

BINARY = shutil.which("claude") or bundled_binary()
NAMESPACE = "landc"

pytestmark = pytest.mark.skipif(BINARY is None, reason="no claude binary (install forge[claude])")


def _last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


def agent(body: dict[str, Any]) -> Reply:
    """Write notes.txt (one line, or two after the follow-up) without committing it."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return Text("Notes written.")
    lines = "first\\nsecond" if "second line" in _last_user_text(body) else "first"
    command = f"printf '{lines}\\n' > notes.txt"
    return ToolUse("Bash", {"command": command, "description": "write notes"})


@pytest.fixture
def home() -> Iterator[Path]:
    """The agent's HOME: Claude Code's settings allow Bash, its sessions are kept here."""
    path = Path(tempfile.mkdtemp(prefix="fcl", dir="/tmp"))
    (path / ".claude").mkdir()
    settings = {"permissions": {"allow": ["Bash"], "defaultMode": "acceptEdits"}}
    (path / ".claude" / "settings.json").write_text(json.dumps(settings))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def recorder(path: Path, record: Path, then: str | None) -> Path:
    """A script standing in for `claude`: it records its argv and directory, then runs
    `then` (the real binary) with the same arguments, or exits."""
    run = f'exec {then} "$@"' if then else "exit 0"
    path.write_text(
        f'#!/bin/sh\n{{ pwd; printf "%s\\n" "$*"; }} >> {record}\n{run}\n', encoding="utf-8"
    )
    path.chmod(0o755)
    return path


def test_continue_resumes_the_same_session_in_the_same_worktree(
    tmp_path: Path, embedded_server: EmbeddedServer, redis_client: redis.Redis, home: Path
) -> None:
    assert BINARY is not None
    repo = make_repo(tmp_path / "repo")
    spaces = GitWorkspaces(tmp_path / "worktrees")
    argv_log = tmp_path / "argv.log"
    wrapper = recorder(tmp_path / "claude-wrapper", argv_log, BINARY)
    store = EventStore(redis_client, NAMESPACE)
    env = {
        "FORGE_HOME": str(tmp_path),
        "FORGE_REDIS_URL": f"unix://{embedded_server.socket}",
        "FORGE_REDIS_NAMESPACE": NAMESPACE,
    }

    def forge(*args: str) -> Result:
        return CliRunner().invoke(cli, ["task", *args], env=env)

    with MockAnthropic(responder=agent) as mock:
        environ = {
            "ANTHROPIC_API_KEY": "sk-ant-api03-forge-test-key-landing",
            "ANTHROPIC_BASE_URL": mock.url,
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "IS_SANDBOX": "1",
        }
        runtime = ClaudeRuntime(str(wrapper), default_model=DEFAULT_MODEL, environ=environ)
        cfg = config(tmp_path / "logs")
        with fleet_on(redis_client, {"claude": runtime}, cfg, NAMESPACE, workspaces=spaces) as (
            fleet,
            _,
        ):
            submit(
                store,
                "c1",
                runtime="claude",
                prompt="Write the notes",
                repo=str(repo),
                env={"HOME": str(home)},
                max_attempts=1,
            )
            first = wait_for(fleet, all_terminal("c1"), timeout=90).tasks["c1"]
            assert first.state == "completed", (first.last_failure, first.last_reason)
            session = first.session_id
            assert session is not None
            assert git(repo, "show", "forge/c1:notes.txt") == "first"

            result = forge("continue", "c1", "Now add a second line")
            assert result.exit_code == 0, result.output
            assert f"attempt 2 resumes session {session}" in result.stdout
            again = wait_for(
                fleet, lambda s: s.tasks["c1"].attempt == 2 and all_terminal("c1")(s), timeout=90
            ).tasks["c1"]
            assert again.state == "completed", (again.last_failure, again.last_reason)
        resumed = mock.turns[-2].body["messages"]

    # the same session: Forge resumed it, and Claude Code reported the same id
    calls = argv_log.read_text().splitlines()
    (started,) = events_of(store, t.TaskStarted, "c1")[:1]
    assert calls[0] == started.workspace  # cwd of attempt 1
    assert f"--session-id={session}" in calls[1]
    assert calls[2] == started.workspace  # the same worktree for the follow-up
    assert f"--resume={session}" in calls[3]
    assert calls[3].endswith("Now add a second line")
    (continued,) = events_of(store, t.TaskContinued, "c1")
    assert (continued.session_id, continued.after_attempt) == (session, 1)
    checkpoints = events_of(store, t.TaskCheckpointed, "c1")
    assert [(c.attempt, c.session_id) for c in checkpoints] == [(1, session), (2, session)]
    assert "Write the notes" in repr(resumed)  # the first conversation was carried over

    # the follow-up's work is on the same branch, its leftovers committed per attempt
    assert git(repo, "show", "forge/c1:notes.txt") == "first\nsecond"
    subjects = git(repo, "log", "--format=%s", "main..forge/c1").splitlines()
    assert subjects == [
        "forge: uncommitted changes of task c1 attempt 2",
        "forge: uncommitted changes of task c1 attempt 1",
    ]
    assert "+second" in forge("diff", "c1").stdout
    merged = forge("merge", "c1")
    assert merged.exit_code == 0, merged.output
    assert (repo / "notes.txt").read_text() == "first\nsecond\n"

    # attach: an interactive `claude --resume` of that session, in the task's worktree
    opened = tmp_path / "attach.log"
    fake = recorder(tmp_path / "claude-interactive", opened, None)
    shown = CliRunner().invoke(
        cli,
        ["task", "attach", "c1", "--print-command"],
        env={**env, "FORGE_RUNTIME_CLAUDE_BINARY": str(fake)},
    )
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == f"cd {started.workspace} && {fake} --resume={session}"
    done = subprocess.run(
        [sys.executable, "-m", "forge", "task", "attach", "c1"],
        env={**os.environ, **env, "FORGE_RUNTIME_CLAUDE_BINARY": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert opened.read_text().splitlines() == [str(started.workspace), f"--resume={session}"]
