"""Git worktrees for agents: each task that names a repository works in its own checkout.

A task's worktree lives at `<root>/<task id>` on the branch `forge/<task id>`, started from the
repository's HEAD, so that agents running at once on one repository never edit the same files.
The commit it started from and the branch HEAD was on are recorded as refs of the repository
(`refs/forge/base/<task id>`, and the symbolic `refs/forge/onto/<task id>`: one file each, so
agents starting at once never contend for a lock), so that the task's work can be diffed and
merged later against the right base; deleting the task's branch deletes them too.
A retry of the task finds the same worktree again (Claude Code's `--resume` needs the same
working directory). When the task ends the worktree is removed or kept according to a
`Retention` policy; a branch that holds commits is never deleted unless asked, and a worktree
with uncommitted changes is never removed unless forced. Sweeping every worktree of a
repository is `forge.runtimes.worktree_sweep`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
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
    "commit_leftovers",
    "dirty_files",
    "find_worktree",
    "git",
    "git_run",
    "has_commits",
    "identity_options",
    "is_dirty",
    "is_git_repository",
    "prepare_worktree",
    "release_worktree",
    "remove_branch",
]

BRANCH_PREFIX = "forge/"

Retention = Literal["always", "on_failure", "never"]
"""Keep a task's worktree after it ends: always, only when it failed (default), or never."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class WorkspaceError(ForgeError):
    """Raised when a task's git worktree cannot be created, inspected or removed."""


@dataclass(frozen=True)
class Workspace:
    """A task's worktree: where it is, its branch, the commit it started from and the branch
    the repository's HEAD was on then (empty if it was detached or is not known)."""

    repo: str
    path: str
    branch: str
    base: str
    onto: str = ""


def git_run(repo: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in `repo` whatever it answers (WorkspaceError only if git cannot be run)."""
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as e:
        raise WorkspaceError(f"cannot run git: {e}") from e


def _git(repo: str | Path, *args: str) -> str:
    done = git_run(repo, *args)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise WorkspaceError(f"git {args[0]} failed in {repo}: {detail[-1] if detail else '?'}")
    return done.stdout.strip()


def git(repo: str | Path, *args: str) -> str:
    """Run git in `repo` and return its stdout; WorkspaceError with git's last line if it fails."""
    return _git(repo, *args)


def identity_options(repo: str | Path) -> list[str]:
    """`-c` options giving git a committer when the repository has none configured (the
    environment's GIT_AUTHOR_*/GIT_COMMITTER_* still win over them)."""
    options = []
    for key, fallback in (("user.name", "Forge"), ("user.email", "forge@localhost")):
        try:
            _git(repo, "config", key)
        except WorkspaceError:
            options += ["-c", f"{key}={fallback}"]
    return options


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


def _read(repo: str, *args: str) -> str:
    try:
        return _git(repo, *args)
    except WorkspaceError:
        return ""


def _base_refs(branch: str) -> tuple[str, str]:
    name = branch.removeprefix(BRANCH_PREFIX)
    return f"refs/forge/base/{name}", f"refs/forge/onto/{name}"


def remove_branch(repo: str, branch: str, *, force: bool) -> None:
    """Delete a task's branch (`-d`, or `-D` with `force`) and its recorded base."""
    _git(repo, "branch", "-D" if force else "-d", branch)
    base_ref, onto_ref = _base_refs(branch)
    _read(repo, "update-ref", "-d", base_ref)
    _read(repo, "symbolic-ref", "--delete", onto_ref)


def _workspace(repo_top: str, path: Path, branch: str) -> Workspace:
    """The workspace of an existing branch, with its recorded base (or, for a branch made
    before bases were recorded, its merge base with HEAD)."""
    base_ref, onto_ref = _base_refs(branch)
    base = _read(repo_top, "rev-parse", "--verify", "--quiet", base_ref)
    if not base:
        base = _git(repo_top, "merge-base", "HEAD", branch)
    onto = _read(repo_top, "symbolic-ref", "-q", onto_ref).removeprefix("refs/heads/")
    return Workspace(repo=repo_top, path=str(path), branch=branch, base=base, onto=onto)


def find_worktree(repo: str | Path, task_id: str, root: str | Path) -> Workspace | None:
    """The task's workspace if its branch exists (its worktree may be gone), else None."""
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    branch = branch_for(task_id)
    if not _branch_exists(repo_top, branch):
        return None
    return _workspace(repo_top, Path(root).resolve() / branch.removeprefix(BRANCH_PREFIX), branch)


def prepare_worktree(repo: str | Path, task_id: str, root: str | Path) -> Workspace:
    """The task's worktree, created on first use (from HEAD) and found again afterwards."""
    repo_top = _git(repo, "rev-parse", "--show-toplevel")
    branch = branch_for(task_id)
    path = Path(root).resolve() / branch.removeprefix(BRANCH_PREFIX)
    existing = _worktrees(repo_top)
    if str(path) in existing:
        if existing[str(path)] != branch:
            raise WorkspaceError(f"{path} is a worktree of another branch")
        return _workspace(repo_top, path, branch)
    if path.exists():
        raise WorkspaceError(f"{path} exists and is not this task's worktree")
    private_directory(path.parent)  # the checkout git makes inside keeps git's own modes
    if _branch_exists(repo_top, branch):  # a kept branch: carry on from where it was
        _git(repo_top, "worktree", "add", str(path), branch)
        return _workspace(repo_top, path, branch)
    base = _git(repo_top, "rev-parse", "HEAD")
    onto = _git(repo_top, "branch", "--show-current")
    _git(repo_top, "worktree", "add", "-b", branch, str(path), base)
    base_ref, onto_ref = _base_refs(branch)
    _git(repo_top, "update-ref", base_ref, base)
    if onto:
        _git(repo_top, "symbolic-ref", onto_ref, f"refs/heads/{onto}")
    return Workspace(repo=repo_top, path=str(path), branch=branch, base=base, onto=onto)


def has_commits(workspace: Workspace) -> bool:
    """Whether the task's branch holds commits beyond the one it started from."""
    count = _git(workspace.repo, "rev-list", "--count", f"{workspace.base}..{workspace.branch}")
    return int(count or 0) > 0


def is_dirty(workspace: Workspace) -> bool:
    """Whether the worktree has uncommitted changes (untracked files included)."""
    return bool(_git(workspace.path, "status", "--porcelain"))


def dirty_files(path: str | Path) -> list[str]:
    """The files of a checkout with uncommitted changes (untracked ones included)."""
    return [line[3:] for line in _git(path, "status", "--porcelain").splitlines() if line]


def commit_leftovers(workspace: Workspace, message: str) -> str | None:
    """Commit whatever the agent left uncommitted in its worktree (untracked files included,
    ignored ones not) on the task's branch; the new commit's id, or None if it was clean.
    Hooks are skipped: this commit keeps work, it does not vouch for it."""
    if not Path(workspace.path).is_dir() or not is_dirty(workspace):
        return None
    _git(workspace.path, "add", "--all")
    _git(
        workspace.path,
        *identity_options(workspace.path),
        "commit",
        "-q",
        "--no-verify",
        "-m",
        message,
    )
    return _git(workspace.path, "rev-parse", "HEAD")


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
        remove_branch(workspace.repo, workspace.branch, force=True)
    elif not has_commits(workspace):
        remove_branch(workspace.repo, workspace.branch, force=False)
    return True


def is_git_repository(path: str | Path) -> bool:
    """Whether `path` is inside a git work tree."""
    try:
        return _git(path, "rev-parse", "--is-inside-work-tree") == "true"
    except WorkspaceError:
        return False


class GitWorkspaces:
    """The `actors.runtime.Workspaces` of a Forge home: worktrees under `root/<repo>-<hash>/`.

    A task's worktree is removed once the task completes (its branch stays if it holds
    commits); a failed attempt's worktree is kept for inspection and for the retry. What a
    successful attempt left uncommitted is first committed on the task's branch
    (`forge: uncommitted changes of task X attempt N`), so nothing is lost and the task's
    diff and merge see it.
    """

    def __init__(self, root: str | Path, retention: Retention = "on_failure") -> None:
        self.root = Path(root)
        self.retention: Retention = retention

    def _root_for(self, repo: str) -> Path:
        top = Path(_git(repo, "rev-parse", "--show-toplevel"))
        digest = hashlib.sha256(str(top).encode()).hexdigest()[:8]
        return self.root / f"{_UNSAFE.sub('-', top.name) or 'repo'}-{digest}"

    @contextlib.contextmanager
    def _serialized(self, repo: str) -> Iterator[Path]:
        """One worktree operation at a time per repository, across threads and processes:
        git reads `.git/worktrees/*` while another `git worktree add` is still writing it
        ("failed to read .git/worktrees/X/commondir")."""
        root = self._root_for(repo)
        private_subdirectory(self.root)
        private_subdirectory(root)
        fd = os.open(root / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield root
        finally:
            os.close(fd)  # releases the lock

    def prepare(self, task_id: str, repo: str) -> tuple[str, str]:
        with self._serialized(repo) as root:
            workspace = prepare_worktree(repo, task_id, root)
        return workspace.path, workspace.branch

    def root_for(self, repo: str) -> Path:
        """The directory holding this repository's task worktrees."""
        return self._root_for(repo)

    def find(self, task_id: str, repo: str) -> Workspace | None:
        """The task's workspace if its branch exists (its worktree may have been removed)."""
        return find_worktree(repo, task_id, self._root_for(repo))

    def release(self, task_id: str, repo: str, *, succeeded: bool, attempt: int = 0) -> None:
        with self._serialized(repo) as root:
            workspace = find_worktree(repo, task_id, root)
            if workspace is None or not Path(workspace.path).is_dir():
                return
            if succeeded:
                which = f" attempt {attempt}" if attempt else ""
                commit_leftovers(workspace, f"forge: uncommitted changes of task {task_id}{which}")
            release_worktree(workspace, succeeded=succeeded, retention=self.retention)
