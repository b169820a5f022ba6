"""What the task page shows beside the log: a claude attempt's output as a transcript (the same
renderer as `forge task logs`) and the diff of the task's branch in a real git worktree, with
secrets masked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from events import types as t
from events.redact import register_secrets
from events.state import TaskState
from forge.daemon import workspaces
from forge.settings import load_settings
from forge.web.task_files import task_diff, task_output

SECRET = "sk-ant-api03-web-dashboard-canary-0123456789"


def _git(repo: Path | str, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_claude_attempt_is_shown_as_a_transcript(tmp_path: Path) -> None:
    register_secrets([SECRET])
    settings = load_settings(environ={"FORGE_HOME": str(tmp_path)})
    log = tmp_path / "attempt-1.log"
    lines = [
        {"type": "system", "subtype": "init", "session_id": "s1", "model": "sonnet"},
        {
            "type": "assistant",
            "message": {
                "content": [
                    {"type": "text", "text": f"Running the tests with {SECRET}"},
                    {"type": "tool_use", "id": "u1", "name": "Bash", "input": {"command": "make"}},
                ]
            },
        },
        {"type": "result", "subtype": "success", "result": "all green", "num_turns": 2},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    task = TaskState(
        task_id="t-claude",
        state="completed",
        definition=t.TaskDefinition(runtime="claude", prompt="run the tests"),
        attempt=1,
        log_path=str(log),
    )
    shown = task_output(settings, task, None)
    text = "\n".join(shown["lines"])
    assert shown["transcript"] is True
    assert "Running the tests" in text
    assert "● Bash: make" in text
    assert SECRET not in text
    assert '"type"' not in text  # rendered, not the raw JSON lines
    assert task_output(settings, task, 2)["note"] == "no such attempt"


def test_the_diff_of_a_task_branch(tmp_path: Path) -> None:
    settings = load_settings(environ={"FORGE_HOME": str(tmp_path / "home")})
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "forge@example.invalid")
    _git(repo, "config", "user.name", "Forge Test")
    (repo / "README").write_text("scratch\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "start")
    path, _branch = workspaces(settings).prepare("t-git", str(repo))
    (Path(path) / "app.py").write_text("print('hello from the agent')\n")
    _git(path, "add", "app.py")
    _git(path, "-c", "user.email=a@b.invalid", "-c", "user.name=A", "commit", "-q", "-m", "app")
    task = TaskState(
        task_id="t-git",
        state="completed",
        definition=t.TaskDefinition(command=["true"], repo=str(repo)),
        attempt=1,
    )
    shown = task_diff(settings, task)
    assert shown["branch"] == "forge/t-git"
    assert shown["files"] == [{"path": "app.py", "added": 1, "deleted": 0}]
    assert "+print('hello from the agent')" in shown["patch"]
    untracked = TaskState(
        task_id="t-none", state="queued", definition=t.TaskDefinition(command=["true"])
    )
    assert "no repository" in task_diff(settings, untracked)["note"]
