"""Landing a task's work from the CLI: diff, merge (and a refused conflict), discard, cleanup.

Shell tasks that commit (or leave changes uncommitted) in their own worktrees run in a real
fleet; then `forge task ...` lands their branches in a scratch repository.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from events import types as t
from events.store import EventStore
from forge.cli.main import cli
from forge.runtimes import ShellRuntime
from forge.runtimes.workspace import GitWorkspaces, prepare_worktree
from forge.server import EmbeddedServer
from tests.actors.helpers import all_terminal, config, events_of, submit, wait_for
from tests.actors.helpers import running_fleet as fleet_on
from tests.cli.helpers import one_error_line

NAMESPACE = "land"
COMMIT = 'printf "%s\\n" "$1" > "$0" && git add "$0" && git commit -q -m "$0"'


def git(repo: Path | str, *args: str) -> str:
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


class Landing:
    """The repository, the log, and `forge` run against them."""

    def __init__(self, tmp: Path, server: EmbeddedServer, client: redis.Redis) -> None:
        self.repo = make_repo(tmp / "repo")
        self.spaces = GitWorkspaces(tmp / "worktrees")
        self.store = EventStore(client, NAMESPACE)
        self.env = {
            "FORGE_HOME": str(tmp),
            "FORGE_REDIS_URL": f"unix://{server.socket}",
            "FORGE_REDIS_NAMESPACE": NAMESPACE,
        }

    def forge(self, *args: str) -> Result:
        return CliRunner().invoke(cli, ["task", *args], env=self.env)


@pytest.fixture
def landing(tmp_path: Path, embedded_server: EmbeddedServer, redis_client: redis.Redis) -> Landing:
    land = Landing(tmp_path, embedded_server, redis_client)
    tasks = {
        "feat": ["sh", "-c", COMMIT, "feat.txt", "feature"],
        "clash": ["sh", "-c", COMMIT, "README", "the agent's readme"],
        "loose": ["sh", "-c", "echo left > loose.txt && mkdir -p sub && echo x > sub/new.txt"],
        "broken": ["sh", "-c", "echo half > half.txt; exit 3"],
    }
    runtimes = {"shell": ShellRuntime()}
    cfg = config(tmp_path / "logs", max_agents=4)
    with fleet_on(redis_client, runtimes, cfg, NAMESPACE, workspaces=land.spaces) as (fleet, _):
        for name, command in tasks.items():
            submit(land.store, name, command=command, repo=str(land.repo), max_attempts=1)
        state = wait_for(fleet, all_terminal(*tasks), timeout=60)
    outcome = [(state.tasks[n].state, state.tasks[n].last_reason) for n in tasks]
    assert [s for s, _ in outcome] == ["completed"] * 3 + ["failed"], outcome
    return land


def test_diff_shows_the_work_against_the_base_with_uncommitted_changes_committed(
    landing: Landing,
) -> None:
    base = git(landing.repo, "rev-parse", "main")
    (landing.repo / "later.txt").write_text("the base branch moves on\n")
    git(landing.repo, "add", "later.txt")
    git(landing.repo, "commit", "-q", "-m", "later")

    result = landing.forge("diff", "feat")
    assert result.exit_code == 0, result.output
    assert "+feature" in result.stdout
    assert "later.txt" not in result.stdout  # against the base, not against main's head
    stat = landing.forge("diff", "feat", "--stat")
    assert "feat.txt | 1 +" in stat.stdout
    data = json.loads(landing.forge("diff", "feat", "--json").stdout)
    assert data["base"] == base
    assert data["files"] == [{"path": "feat.txt", "added": 1, "deleted": 0}]

    # the task that committed nothing: its leftovers were committed when it succeeded
    subject = git(landing.repo, "log", "-1", "--format=%s", "forge/loose")
    assert subject == "forge: uncommitted changes of task loose attempt 1"
    loose = landing.forge("diff", "loose", "--stat").stdout
    assert "loose.txt" in loose
    assert "sub/new.txt" in loose
    assert not Path(landing.spaces.find("loose", str(landing.repo)).path).exists()  # type: ignore[union-attr]


def test_merge_lands_the_work_and_refuses_a_conflict(landing: Landing) -> None:
    (landing.repo / "README").write_text("main's own readme\n")
    git(landing.repo, "commit", "-q", "-am", "main edits the readme")
    git(landing.repo, "branch", "release", "HEAD~1")
    before = git(landing.repo, "rev-parse", "main")

    refused = landing.forge("merge", "clash")
    assert refused.exit_code == 1
    line = one_error_line(refused)
    assert "conflicts in README" in line
    assert "main is untouched" in line
    assert git(landing.repo, "rev-parse", "main") == before
    assert git(landing.repo, "status", "--porcelain") == ""
    assert not events_of(landing.store, t.TaskMerged)

    merged = landing.forge("merge", "feat")
    assert merged.exit_code == 0, merged.output
    assert "merged forge/feat into main" in merged.stdout
    head = git(landing.repo, "rev-parse", "main")
    assert (landing.repo / "feat.txt").read_text() == "feature\n"  # the checkout moved too
    assert git(landing.repo, "rev-parse", "main^2") == git(landing.repo, "rev-parse", "forge/feat")
    (event,) = events_of(landing.store, t.TaskMerged, "feat")
    assert (event.into, event.commit, event.squash) == ("main", head, False)
    shown = json.loads(landing.forge("show", "feat", "--json").stdout)
    assert (shown["merged_into"], shown["merge_commit"]) == ("main", head)
    again = landing.forge("merge", "feat")
    assert "nothing to merge" in again.stdout

    squashed = landing.forge("merge", "loose", "--squash", "--into", "release")
    assert squashed.exit_code == 0, squashed.output
    assert "(squashed)" in squashed.stdout
    assert git(landing.repo, "show", "release:loose.txt") == "left"
    assert git(landing.repo, "rev-list", "--count", "release") == "2"  # one commit on top
    assert git(landing.repo, "rev-parse", "main") == head  # only the target moved

    still_running = landing.forge("merge", "nosuch")
    assert one_error_line(still_running) == "Error: unknown task id 'nosuch'"


def test_discard_removes_the_worktree_and_branch_and_records_it(landing: Landing) -> None:
    broken = landing.spaces.find("broken", str(landing.repo))
    assert broken is not None
    assert Path(broken.path, "half.txt").exists()  # a failed attempt's worktree is kept
    head = git(landing.repo, "rev-parse", "forge/broken")
    result = landing.forge("discard", "broken")
    assert result.exit_code == 0, result.output
    assert not Path(broken.path).exists()
    assert git(landing.repo, "branch", "--list", "forge/broken") == ""
    (event,) = events_of(landing.store, t.TaskDiscarded, "broken")
    assert (event.branch, event.head, event.worktree) == ("forge/broken", head, broken.path)
    for args in (["discard", "broken"], ["diff", "broken"], ["merge", "broken"]):
        refused = landing.forge(*args)
        assert refused.exit_code == 1
        assert "discarded" in one_error_line(refused)
    shell = landing.forge("continue", "feat", "more please")
    assert "has no Claude session" in one_error_line(shell)


def test_cleanup_removes_what_it_reports_and_says_what_it_keeps(landing: Landing) -> None:
    broken = landing.spaces.find("broken", str(landing.repo))
    assert broken is not None
    Path(broken.path, "untracked.txt").write_text("left behind\n")
    stranger = prepare_worktree(
        landing.repo, "stranger", landing.spaces.root_for(str(landing.repo))
    )
    result = landing.forge("cleanup")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    removed = next(x for x in lines if "(forge/broken)" in x)
    assert removed.startswith(f"removed {broken.path}")
    assert "uncommitted changes committed" in removed
    assert not Path(broken.path).exists()
    kept = git(landing.repo, "show", "forge/broken:untracked.txt")
    assert kept == "left behind"  # nothing lost
    assert f"kept {stranger.path} (forge/stranger): no task of this log owns it" in lines
    assert Path(stranger.path).exists()
    assert landing.forge("cleanup").stdout.splitlines() == [
        f"kept {stranger.path} (forge/stranger): no task of this log owns it"
    ]
