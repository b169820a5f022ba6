"""The user's whole loop, as the README shows it, through the `forge` CLI and a real daemon
running the REAL claude binary against the mock Messages API: give work, watch, approve,
review, land.

The model writes a file (allowed by the default policy) and then fetches a URL (left open by
it, so it waits for a person); the test approves it from the CLI, reads the transcript, diffs
the task's branch and merges it into the repository's main branch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from forge.server import EmbeddedServer
from tests.claude_agents import needs_claude
from tests.conftest import short_tempdir
from tests.daemon.conftest import DaemonHarness
from tests.mock_anthropic import MockAnthropic, Text, ToolUse

API_KEY = "sk-ant-api03-forge-loop-key-0123456789abcdef"

pytestmark = [
    pytest.mark.slow,
    needs_claude,
]


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


def _repository(root: Path) -> Path:
    repo = root / "app"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "dev@example.invalid")
    _git(repo, "config", "user.name", "Dev")
    (repo / "README").write_text("app\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-qm", "init")
    return repo


def test_give_watch_approve_review_land(
    harness: DaemonHarness, mock: MockAnthropic, embedded_server: EmbeddedServer
) -> None:
    h = harness
    agent_home = short_tempdir("fgh")
    h.env |= {
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": mock.url,
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "HOME": str(agent_home),
    }
    repo = _repository(h.home)
    mock.script(
        ToolUse("Write", {"file_path": "notes.txt", "content": "from the agent\n"}, text="Notes."),
        ToolUse("WebFetch", {"url": "https://example.com/spec", "prompt": "read"}, text="Look."),
        Text("Notes written."),
    )
    daemon = h.foreground()
    h.wait_for("the daemon", lambda: (r := h.files.read()) is not None and r.pid == daemon.pid)

    # give work
    task = h.forge("task", "submit", "Write notes.txt, then read the spec", "--repo", str(repo))
    assert task.returncode == 0, task.stderr
    task_id = task.stdout.strip()

    # watch, approve
    def waiting() -> list[dict[str, object]]:
        listed = h.forge("approvals", "--json")
        assert listed.returncode == 0, listed.stderr
        found: list[dict[str, object]] = json.loads(listed.stdout)
        return found

    pending = h.wait_for("an approval request", waiting, timeout=60)
    assert [(p["task_id"], p["tool"]) for p in pending] == [(task_id, "WebFetch")]
    status = h.forge("status").stdout
    assert "waits approval" in status
    assert str(pending[0]["approval_id"]) in status
    approved = h.forge("approve", str(pending[0]["approval_id"]))
    assert approved.returncode == 0, approved.stderr

    # review
    h.wait_for("the task to end", lambda: h.state().tasks[task_id].state == "completed", 60)
    shown = h.forge("task", "show", task_id).stdout
    assert "state: completed" in shown
    assert f"branch: forge/{task_id}" in shown
    transcript = h.forge("task", "logs", task_id).stdout
    assert "● Write: notes.txt" in transcript
    assert "● WebFetch: https://example.com/spec" in transcript
    assert "✓ done" in transcript
    assert API_KEY not in transcript
    diff = h.forge("task", "diff", task_id).stdout
    assert "+from the agent" in diff

    # land
    merged = h.forge("task", "merge", task_id)
    assert merged.returncode == 0, merged.stderr
    assert (repo / "notes.txt").read_text() == "from the agent\n"
    assert "notes.txt" in _git(repo, "show", "--stat", "main")
    history = h.forge("task", "history", task_id).stdout
    assert "approval.answered" in history
    assert "task.merged" in history

    assert h.forge("daemon", "stop").returncode == 0
    assert daemon.wait(timeout=30) == 0
    shutil.rmtree(agent_home, ignore_errors=True)
