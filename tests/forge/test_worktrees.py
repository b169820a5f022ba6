"""Tasks that name a git repository run in their own worktree and branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis
from click.testing import CliRunner

from forge.cli.main import cli
from forge.runtimes import ShellRuntime
from forge.runtimes.workspace import GitWorkspaces
from forge.server import EmbeddedServer
from tests.actors.helpers import (
    all_terminal,
    assert_replay_matches,
    config,
    submit,
    wait_for,
)
from tests.actors.helpers import running_fleet as fleet_on


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "forge@example.invalid")
    git(path, "config", "user.name", "Forge Test")
    (path / "README").write_text("scratch\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "start")
    return path


COMMIT = "echo $0 > $0.txt && git add $0.txt && git commit -q -m $0"


def test_parallel_tasks_get_their_own_worktrees_and_branches(
    redis_client: redis.Redis, embedded_server: EmbeddedServer, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    spaces = GitWorkspaces(tmp_path / "worktrees")
    cfg = config(tmp_path / "logs", max_agents=3)
    runtimes = {"shell": ShellRuntime()}
    with fleet_on(redis_client, runtimes, cfg, namespace="wt", workspaces=spaces) as (
        fleet,
        store,
    ):
        for name in ("alpha", "beta"):
            submit(store, name, command=["sh", "-c", COMMIT, name], repo=str(repo))
        submit(
            store, "broken", command=["sh", "-c", "echo half > half.txt; exit 3"], repo=str(repo)
        )
        state = wait_for(fleet, all_terminal("alpha", "beta", "broken"), timeout=30)
        for name in ("alpha", "beta"):
            task = state.tasks[name]
            assert task.state == "completed"
            assert task.branch == f"forge/{name}"
            assert task.workspace is not None
            assert not Path(task.workspace).exists()  # removed once the task completed
            assert git(repo, "show", f"forge/{name}:{name}.txt") == name  # the work is kept
        broken = state.tasks["broken"]
        assert broken.state == "failed"
        assert broken.workspace is not None
        assert (Path(broken.workspace) / "half.txt").exists()  # kept for inspection
        assert git(repo, "status", "--porcelain") == ""  # the main checkout was never touched
        assert_replay_matches(store, state)

    env = {
        "FORGE_HOME": str(tmp_path),
        "FORGE_REDIS_URL": f"unix://{embedded_server.socket}",
        "FORGE_REDIS_NAMESPACE": "wt",
    }
    result = CliRunner().invoke(cli, ["task", "show", "broken"], env=env)
    assert "worktree: " in result.stdout
    assert "branch: forge/broken" in result.stdout
    result = CliRunner().invoke(cli, ["task", "cleanup", "--force"], env=env)
    assert result.exit_code == 0, result.output
    assert "forge/broken" in result.stdout
    assert not Path(broken.workspace).exists()
    assert "forge/alpha" in git(repo, "branch", "--list", "forge/*")  # commits: branch kept


def test_submit_refuses_a_repo_that_is_not_git(
    tmp_path: Path, embedded_server: EmbeddedServer
) -> None:
    env = {
        "FORGE_HOME": str(tmp_path),
        "FORGE_REDIS_URL": f"unix://{embedded_server.socket}",
        "FORGE_REDIS_NAMESPACE": "wt2",
    }
    result = CliRunner().invoke(
        cli, ["task", "submit", "-c", "true", "--repo", str(tmp_path)], env=env
    )
    assert result.exit_code == 1
    assert "is not a git repository" in result.stderr
