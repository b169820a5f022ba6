"""Git worktrees per task, on a scratch repository; and several real Claude agents at once."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.runtime import TaskSpec
from forge.runtimes.claude import ClaudeRuntime
from forge.runtimes.claude_command import bundled_binary
from forge.runtimes.workspace import (
    Workspace,
    WorkspaceError,
    branch_for,
    has_commits,
    prepare_worktree,
    release_worktree,
)
from forge.runtimes.worktree_sweep import cleanup_worktrees
from tests.mock_anthropic import DEFAULT_MODEL, MockAnthropic, Reply, Text, ToolUse

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Forge Test",
    "GIT_AUTHOR_EMAIL": "forge@example.invalid",
    "GIT_COMMITTER_NAME": "Forge Test",
    "GIT_COMMITTER_EMAIL": "forge@example.invalid",
}


def git(repo: Path | str, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(repo), **GIT_ENV},
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-qm", "initial")
    return path


def commit_in(workspace: Workspace, name: str) -> None:
    (Path(workspace.path) / name).write_text(name)
    git(workspace.path, "add", name)
    git(workspace.path, "commit", "-qm", f"add {name}")


def test_each_task_gets_its_own_worktree_and_branch(repo: Path, tmp_path: Path) -> None:
    one = prepare_worktree(repo, "task-1", tmp_path / "wt")
    two = prepare_worktree(repo, "task 2/x", tmp_path / "wt")
    assert (one.branch, two.branch) == ("forge/task-1", "forge/task-2-x")
    assert one.path != two.path
    assert (Path(one.path) / "README").read_text() == "hello\n"
    assert one.base == git(repo, "rev-parse", "HEAD")
    assert git(one.path, "branch", "--show-current") == "forge/task-1"


def test_a_retry_finds_the_same_worktree(repo: Path, tmp_path: Path) -> None:
    first = prepare_worktree(repo, "t1", tmp_path / "wt")
    commit_in(first, "work.txt")
    again = prepare_worktree(repo, "t1", tmp_path / "wt")
    assert again == first
    assert (Path(again.path) / "work.txt").exists()


def test_kept_on_failure_removed_on_success(repo: Path, tmp_path: Path) -> None:
    workspace = prepare_worktree(repo, "t1", tmp_path / "wt")
    assert not release_worktree(workspace, succeeded=False)
    assert Path(workspace.path).exists()
    assert release_worktree(workspace, succeeded=True)
    assert not Path(workspace.path).exists()
    assert branch_for("t1") not in git(repo, "branch", "--list")  # no commits: branch removed


def test_a_branch_with_commits_is_kept_unless_asked(repo: Path, tmp_path: Path) -> None:
    workspace = prepare_worktree(repo, "t1", tmp_path / "wt")
    commit_in(workspace, "result.txt")
    assert has_commits(workspace)
    assert release_worktree(workspace, succeeded=True)
    assert "forge/t1" in git(repo, "branch", "--list")
    again = prepare_worktree(repo, "t1", tmp_path / "wt")  # picks the kept branch up again
    assert (Path(again.path) / "result.txt").exists()
    assert release_worktree(again, succeeded=True, delete_branch=True)
    assert "forge/t1" not in git(repo, "branch", "--list")


def test_dirty_worktree_is_kept_unless_forced(repo: Path, tmp_path: Path) -> None:
    workspace = prepare_worktree(repo, "t1", tmp_path / "wt")
    (Path(workspace.path) / "scratch.txt").write_text("unsaved")
    assert not release_worktree(workspace, succeeded=True)
    assert release_worktree(workspace, succeeded=True, force=True)
    assert not Path(workspace.path).exists()


def test_retention_policies(repo: Path, tmp_path: Path) -> None:
    workspace = prepare_worktree(repo, "t1", tmp_path / "wt")
    assert not release_worktree(workspace, succeeded=True, retention="always")
    assert release_worktree(workspace, succeeded=False, retention="never")


def test_cleanup_removes_leftovers_of_finished_tasks(repo: Path, tmp_path: Path) -> None:
    live = prepare_worktree(repo, "running", tmp_path / "wt")
    done = prepare_worktree(repo, "done", tmp_path / "wt")
    worked = prepare_worktree(repo, "worked", tmp_path / "wt")
    commit_in(worked, "out.txt")
    removed = cleanup_worktrees(repo, {"running"})
    assert sorted(w.branch for w in removed) == ["forge/done", "forge/worked"]
    assert Path(live.path).exists()
    assert not Path(done.path).exists()
    branches = git(repo, "branch", "--list")
    assert "forge/worked" in branches  # it holds commits
    assert "forge/done" not in branches


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="rev-parse"):
        prepare_worktree(tmp_path, "t1", tmp_path / "wt")


BINARY = shutil.which("claude") or bundled_binary()
AGENTS = 3


def agent_turn(body: dict[str, Any]) -> Reply:
    """Commit a file in the agent's own checkout, then answer; decided by the conversation."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and any(b.get("type") == "tool_result" for b in last):
        return Text("Committed my work.")
    command = "pwd > result.txt && git add result.txt && git commit -qm 'agent result'"
    return ToolUse("Bash", {"command": command, "description": "commit"})


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fcw", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(BINARY is None, reason="no claude binary (install forge[claude])")
def test_several_agents_at_once_on_one_repository(repo: Path, tmp_path: Path, home: Path) -> None:
    with MockAnthropic(responder=agent_turn) as mock:
        environ = {
            "ANTHROPIC_API_KEY": "sk-ant-api03-forge-test-key-parallel",
            "ANTHROPIC_BASE_URL": mock.url,
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        runtime = ClaudeRuntime(BINARY, default_model=DEFAULT_MODEL, environ=environ)
        workspaces = [prepare_worktree(repo, f"agent-{i}", tmp_path / "wt") for i in range(AGENTS)]
        handles = [
            runtime.execute(
                TaskSpec(
                    task_id=f"agent-{i}",
                    attempt=1,
                    log_path=str(tmp_path / f"agent-{i}.log"),
                    prompt="Commit your result",
                    cwd=ws.path,
                    env={"PATH": "/usr/bin:/bin", "HOME": str(home), **GIT_ENV},
                    allowed_tools=["Bash"],
                ),
                lambda _notice: None,
            )
            for i, ws in enumerate(workspaces)
        ]
        outcomes = [h.wait(timeout=60) for h in handles]
    assert all(o is not None and o.ok for o in outcomes), outcomes
    for ws in workspaces:
        assert git(repo, "log", "-1", "--format=%s", ws.branch) == "agent result"
        assert git(repo, "show", f"{ws.branch}:result.txt") == ws.path
        assert release_worktree(ws, succeeded=True)  # removed; the branch stays (commits)
    assert git(repo, "log", "-1", "--format=%s", "main") == "initial"
    assert not (repo / "result.txt").exists()
    assert len(git(repo, "branch", "--list", "forge/*").splitlines()) == AGENTS
