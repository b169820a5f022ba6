"""Git worktrees for agents: each task that names a repository works in its own checkout.

A task's worktree lives at `<root>/<task id>` on the branch `forge/<task id>`, started from the
repository's HEAD, so that agents running at once on one repository never edit the same files.
A retry of the task finds the same worktree again (Claude Code's `--resume` needs the same
working directory). When the task ends the worktree is removed or kept according to a
`Retention` policy; a branch that holds commits is never deleted unless asked, and a worktree
with uncommitted changes is never removed unless forced.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from events.errors import ForgeError
from forge.private_files import private_directory, private_subdirectory

__all__ = [
    "BRANCH_PREFIX",
    "GitWorkspaces",
    "Retention",
    "Workspace",
    "WorkspaceError",
    "branch_for",
    "cleanup_worktrees",
    "has_commits",
    "is_dirty",
    "is_git_repository",
    "prepare_worktree",
    "release_worktree",
]

BRANCH_PREFIX = "forge/"

Retention = Literal["always", "on_failure", "never"]
"""Keep a task's worktree after it ends: always, only when it failed (default), or never."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WorkspaceError(ForgeError):
    """Raised when a task's git worktree cannot be created, inspected or removed."""


@dataclass(frozen=True)
class Workspace:
    """A task's worktree: where it is, its branch, and the commit it started from."""

    repo: str
    path: str
    branch: str
    base: str


def _git(repo: str | Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as e:
        raise WorkspaceError(f"cannot run git: {e}") from e
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise WorkspaceError(f"git {args[0]} failed in {repo}: {detail[-1] if detail else '?'}")
    return done.stdout.strip()


def branch_for(task_id: str) -> str:
    """The branch of a task's worktree (`forge/<task id>`, made safe for git)."""
    safe = _UNSAFE.sub("-", task_id).strip(".-") or "task"
    return BRANCH_PREFIX + safe


def _worktrees(repo: str) -> dict[str, str]:
    """The repository's worktrees: path → branch (detached ones have an empty branch)."""
    found: dict[str, str] = {}
    path = None
    for line in _git(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = line.removeprefix("worktree ")
            found[path] = ""
        elif line.startswith("branch ") and path is not None:
            found[path] = line.removeprefix("branch refs/heads/")
    return found


def _branch_exists(repo: str, branch: str) -> bool:
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    except WorkspaceError:
        return False
    return True


def prepare_worktree(repo: str | Path, task_id: str, root: str | Path) -> Workspace:
    """The task's worktree, created on first use (from HEAD) and found again afterwards."""
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    branch = branch_for(task_id)
    path = Path(root).resolve() / branch.removeprefix(BRANCH_PREFIX)
    existing = _worktrees(repo_top)
    if str(path) in existing:
        if existing[str(path)] != branch:
            raise WorkspaceError(f"{path} is a worktree of another branch")
        base = _git(repo_top, "merge-base", "HEAD", branch)
        return Workspace(repo=repo_top, path=str(path), branch=branch, base=base)
    if path.exists():
        raise WorkspaceError(f"{path} exists and is not this task's worktree")
    private_directory(path.parent)  # the checkout git makes inside keeps git's own modes
    if _branch_exists(repo_top, branch):  # a kept branch: carry on from where it was
        _git(repo_top, "worktree", "add", str(path), branch)
        base = _git(repo_top, "merge-base", "HEAD", branch)
    else:
        base = _git(repo_top, "rev-parse", "HEAD")
        _git(repo_top, "worktree", "add", "-b", branch, str(path), base)
    return Workspace(repo=repo_top, path=str(path), branch=branch, base=base)


def has_commits(workspace: Workspace) -> bool:
    """Whether the task's branch holds commits beyond the one it started from."""
    count = _git(workspace.repo, "rev-list", "--count", f"{workspace.base}..{workspace.branch}")
    return int(count or 0) > 0


def is_dirty(workspace: Workspace) -> bool:
    """Whether the worktree has uncommitted changes (untracked files included)."""
    return bool(_git(workspace.path, "status", "--porcelain"))


def release_worktree(
    workspace: Workspace,
    *,
    succeeded: bool,
    retention: Retention = "on_failure",
    force: bool = False,
    delete_branch: bool = False,
) -> bool:
    """Remove the worktree unless the policy keeps it; True if it was removed.

    A dirty worktree is kept unless `force`. The branch is deleted only when it holds no
    commits of its own, or when `delete_branch` asks for it.
    """
    keep = retention == "always" or (retention == "on_failure" and not succeeded)
    if keep or not Path(workspace.path).exists():
        return False
    if is_dirty(workspace) and not force:
        return False
    _git(workspace.repo, "worktree", "remove", *(["--force"] if force else []), workspace.path)
    if delete_branch:
        _git(workspace.repo, "branch", "-D", workspace.branch)
    elif not has_commits(workspace):
        _git(workspace.repo, "branch", "-d", workspace.branch)
    return True


def cleanup_worktrees(
    repo: str | Path,
    still_needed: Callable[[str], bool] | Iterable[str],
    *,
    force: bool = False,
    delete_branches: bool = False,
) -> list[Workspace]:
    """Remove the `forge/` worktrees of tasks that no longer need them; returns those removed.

    `still_needed` holds the task ids (as in their branch names, after `forge/`) whose
    worktrees must stay, or is a predicate on them. Branches with commits are kept unless
    `delete_branches`; dirty worktrees are kept unless `force`.
    """
    needed = still_needed if callable(still_needed) else set(still_needed).__contains__
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    _git(repo_top, "worktree", "prune")
    removed: list[Workspace] = []
    for path, branch in _worktrees(repo_top).items():
        if not branch.startswith(BRANCH_PREFIX) or needed(branch.removeprefix(BRANCH_PREFIX)):
            continue
        base = _git(repo_top, "merge-base", "HEAD", branch)
        workspace = Workspace(repo=repo_top, path=path, branch=branch, base=base)
        if release_worktree(
            workspace, succeeded=True, retention="never", force=force, delete_branch=delete_branches
        ):
            removed.append(workspace)
    return removed


def is_git_repository(path: str | Path) -> bool:
    """Whether `path` is inside a git work tree."""
    try:
        return _git(path, "rev-parse", "--is-inside-work-tree") == "true"
    except WorkspaceError:
        return False


class GitWorkspaces:
    """The `actors.runtime.Workspaces` of a Forge home: worktrees under `root/<repo>-<hash>/`.

    A task's worktree is removed once the task completes (its branch stays if it holds
    commits); a failed attempt's worktree is kept for inspection and for the retry.
    """

    def __init__(self, root: str | Path, retention: Retention = "on_failure") -> None:
        self.root = Path(root)
        self.retention: Retention = retention

    def _root_for(self, repo: str) -> Path:
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        digest = hashlib.sha256(str(top).encode()).hexdigest()[:8]
        return self.root / f"{_UNSAFE.sub('-', top.name) or 'repo'}-{digest}"

    def prepare(self, task_id: str, repo: str) -> tuple[str, str]:
        private_subdirectory(self.root)
        workspace = prepare_worktree(repo, task_id, self._root_for(repo))
        return workspace.path, workspace.branch

    def release(self, task_id: str, repo: str, *, succeeded: bool) -> None:
        workspace = prepare_worktree(repo, task_id, self._root_for(repo))
        release_worktree(workspace, succeeded=succeeded, retention=self.retention)
