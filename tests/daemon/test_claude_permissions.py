"""Permission policies end to end: `forge task submit` → the daemon → the REAL claude binary
(against the mock Messages API) in the task's own worktree → the log → `forge task show|list`.

Under the default policy the agent's Write, Edit and Bash calls (a python3 command and a git
commit, both of which `acceptEdits` alone refuses) change its branch without a person; under
`--locked` the refused Write is recorded, shown, and the task is not a clean success.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from events import types as t
from events.state import TaskState
from tests.claude_agents import BINARY, needs_claude
from tests.daemon.conftest import DaemonHarness
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-permissions-key-0123456789"
CONTENT = "locked-content-that-must-never-reach-the-log"
GIT_ENV = [
    "GIT_AUTHOR_NAME=Agent",
    "GIT_AUTHOR_EMAIL=agent@example.invalid",
    "GIT_COMMITTER_NAME=Agent",
    "GIT_COMMITTER_EMAIL=agent@example.invalid",
]

pytestmark = needs_claude


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "a.txt").write_text("old line\n")
    _git(path, "add", "a.txt")
    _git(path, "-c", "user.name=T", "-c", "user.email=t@example.invalid", "commit", "-qm", "init")
    return path


@pytest.fixture
def claude_harness(harness: DaemonHarness, mock: MockAnthropic) -> Iterator[DaemonHarness]:
    agent_home = Path(tempfile.mkdtemp(prefix="fcp", dir="/tmp"))
    harness.env |= {
        "HOME": str(agent_home),  # the agent's HOME (runtime.env_allowlist passes it on)
        "FORGE_RUNTIME_CLAUDE_BINARY": str(BINARY),
        "FORGE_RUNTIME_DEFAULT_MODEL": DEFAULT_MODEL,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": mock.url,
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    for name in [n for n in harness.env if n.startswith("FORGE_CLAUDE_")]:
        del harness.env[name]
    yield harness
    shutil.rmtree(agent_home, ignore_errors=True)


def _submit(h: DaemonHarness, *args: str) -> str:
    done = h.forge("task", "submit", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _ended(h: DaemonHarness, task_id: str) -> TaskState:
    try:
        task: TaskState = h.wait_for(
            f"task {task_id} to end",
            lambda: (x := h.state().tasks.get(task_id)) is not None and x.terminal and x,
            timeout=90,
        )
    except AssertionError:
        log = (h.home / "foreground.log").read_text()[-3000:]
        raise AssertionError(f"{h.state().tasks.get(task_id)}\n{log}") from None
    return task


def test_default_policy_edits_and_runs_commands_locked_refusal_is_recorded_and_shown(
    claude_harness: DaemonHarness, mock: MockAnthropic, repo: Path
) -> None:
    h = claude_harness
    h.foreground()
    h.wait_for("the daemon", lambda: h.forge("daemon", "status").returncode == 0)

    # 1. the default policy: no person needed to edit files and run the project's commands
    mock.script(
        ToolUse("Write", {"file_path": "new.txt", "content": "written\n"}),
        ToolUse("Read", {"file_path": "a.txt"}),
        ToolUse("Edit", {"file_path": "a.txt", "old_string": "old line", "new_string": "new"}),
        ToolUse("Bash", {"command": "python3 -c \"open('ran.txt', 'w').write('ran')\""}),
        ToolUse("Bash", {"command": "git add -A && git commit -qm 'agent work'"}),
        Text("Edited, ran and committed."),
    )
    env_flags = [arg for pair in GIT_ENV for arg in ("--env", pair)]
    free = _submit(h, "Do the work", "--repo", str(repo), *env_flags)
    task = _ended(h, free)
    assert task.state == "completed", (task.last_failure, task.last_reason)
    assert task.denials == ()
    d = task.definition
    assert (d.permission_mode, d.allowed_tools) == ("acceptEdits", ("Bash",))
    assert d.disallowed_tools == ("Bash(git push *)", "Bash(sudo *)")
    branch = f"forge/{free}"
    assert _git(repo, "show", f"{branch}:new.txt") == "written\n"
    assert _git(repo, "show", f"{branch}:a.txt") == "new\n"
    assert _git(repo, "show", f"{branch}:ran.txt") == "ran"
    assert "agent work" in _git(repo, "log", "--format=%s", branch)
    assert (repo / "a.txt").read_text() == "old line\n"  # the user's checkout is untouched

    # 2. locked down: the Write is refused, recorded, shown; the task is not a success
    mock.script(
        ToolUse("Write", {"file_path": "locked.txt", "content": CONTENT}),
        Text("I wrote locked.txt."),  # what the agent claims; the log says otherwise
    )
    locked = _submit(h, "Write it", "--repo", str(repo), "--locked")
    task = _ended(h, locked)
    assert (task.state, task.last_failure) == ("failed", "permission_denied")
    assert task.definition.permission_mode == "dontAsk"
    assert task.definition.allowed_tools == ()
    (denial,) = task.denials
    assert (denial.attempt, denial.tool) == (1, "Write")
    assert denial.summary == f"{task.workspace}/locked.txt"  # the path Claude Code resolved
    assert task.attempt == 1  # permanent: not retried into the same refusal
    recorded = [
        e.event for e in h.store.read_range() if isinstance(e.event, t.TaskPermissionDenied)
    ]
    assert [(e.task_id, e.tool) for e in recorded] == [(locked, "Write")]

    shown = h.forge("task", "show", locked)
    assert shown.returncode == 0, shown.stderr
    assert "permission_denied" in shown.stdout
    assert "permissions: dontAsk (locked" in shown.stdout
    assert f"attempt 1: Write {task.workspace}/locked.txt" in shown.stdout
    listed = h.forge("task", "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(locked))
    assert "failed (1 refused)" in row
    history = h.forge("task", "history", locked)
    assert "task.permission_denied" in history.stdout

    log = b"".join(raw for e in h.client.xrange(h.store.keys.log) for raw in e[1].values())
    assert CONTENT.encode() not in log  # a refused call's content never reaches the log
    assert API_KEY.encode() not in log
